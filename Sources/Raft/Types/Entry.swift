/// One record of the replicated log.
///
/// `index` and `term` identify an entry uniquely across the cluster (Log Matching,
/// Raft paper §5.3): two logs that hold an entry with the same index and term hold
/// identical entries up to and including it.
public struct Entry: Sendable, Hashable {
    /// What the payload means to the state machine.
    public enum Kind: UInt8, Sendable {
        /// Application data (empty for the no-op a new leader appends, §8).
        case normal = 0
        /// An encoded ``ConfChange``; applied by Raft itself when committed.
        case confChange = 1
    }

    public var term: UInt64
    public var index: UInt64
    public var kind: Kind
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, kind: Kind = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data
    }

    /// Bytes this entry counts for when batching by size (payload plus a fixed header).
    @inlinable
    public var byteSize: Int { data.count + 24 }
}

extension Array where Element == Entry {
    /// Sum of ``Entry/byteSize`` over the entries.
    @inlinable
    public var byteSize: Int {
        var total = 0
        for entry in self { total &+= entry.byteSize }
        return total
    }
}
