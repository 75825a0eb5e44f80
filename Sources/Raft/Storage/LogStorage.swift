/// Why stable storage could not answer.
public enum StorageError: Error, Sendable, Hashable {
    /// The requested index is covered by a snapshot; the entries are gone.
    case compacted
    /// The requested index is past the last entry.
    case unavailable
    /// The snapshot is being produced; Raft retries later.
    case snapshotTemporarilyUnavailable
    /// An I/O failure, with a message a person can act on.
    case io(String)
}

/// The durable log as Raft reads it. Raft never writes here: the driver persists
/// what ``Ready`` hands it and then calls ``RaftNode/advance(_:)``.
///
/// Contract (mirrors etcd-io/raft's `Storage`):
/// - Indexes `firstIndex...lastIndex` are readable; `firstIndex - 1` is the index of
///   the latest snapshot (its term is readable through `term(at:)` too).
/// - An empty log after a snapshot at index `s` has `firstIndex == s + 1` and
///   `lastIndex == s`.
/// - Implementations are used from one thread at a time (the node loop).
public protocol RaftLogStorage: AnyObject {
    /// Hard state and membership saved before the last shutdown.
    func initialState() throws(StorageError) -> (hardState: HardState, confState: ConfState)
    /// Entries in `range`, at least one if any exist, then up to `maxBytes` in total.
    func entries(_ range: Range<UInt64>, maxBytes: Int) throws(StorageError) -> [Entry]
    /// Term of the entry at `index`, for `firstIndex - 1 ... lastIndex`.
    func term(at index: UInt64) throws(StorageError) -> UInt64
    /// First index held in the log (snapshot index + 1).
    var firstIndex: UInt64 { get }
    /// Last index held in the log (snapshot index when the log is empty).
    var lastIndex: UInt64 { get }
    /// The most recent snapshot, to send to a follower that is too far behind.
    func snapshot() throws(StorageError) -> Snapshot
}
