/// A single-server membership change (Raft thesis §4.1, with the fix from
/// Ongaro's 2015 raft-dev note: a leader proposes none until it has committed an
/// entry of its own term, and at most one is pending at a time).
///
/// Changes take effect on each member when the entry is applied, as in
/// etcd-io/raft; see docs/raft.md for why that is safe with one change at a time.
public struct ConfChange: Sendable, Hashable {
    public enum Kind: UInt8, Sendable {
        /// Adds a voter, or promotes a learner to voter.
        case addVoter = 0
        /// Adds a learner (non-voting member that replicates), or demotes a voter.
        case addLearner = 1
        /// Removes a voter or a learner; refused for a node that is neither.
        case remove = 2
        /// Promotes a learner to voter; refused for a node that is not a
        /// learner (when applied too: a promotion that arrives after the
        /// learner's removal must not add a voter nobody runs).
        case promote = 3
    }

    public var kind: Kind
    public var node: NodeID
    /// Opaque bytes for the application (for example the member's peer URLs).
    public var context: [UInt8]

    public init(_ kind: Kind, node: NodeID, context: [UInt8] = []) {
        self.kind = kind
        self.node = node
        self.context = context
    }

    /// Wire form inside an ``Entry`` of kind `.confChange`:
    /// `kind (1 byte) | node (8 bytes little-endian) | context`.
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(9 + context.count)
        bytes.append(kind.rawValue)
        var node = self.node.littleEndian
        withUnsafeBytes(of: &node) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: context)
        return bytes
    }

    /// Decodes ``encoded()``; `nil` for malformed bytes.
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count >= 9, let kind = Kind(rawValue: bytes[0]) else { return nil }
        var node: UInt64 = 0
        for i in 0..<8 { node |= UInt64(bytes[1 + i]) << (8 * UInt64(i)) }
        self.init(kind, node: node, context: Array(bytes[9...]))
    }
}

extension ConfState {
    /// The configuration after `change`. Throws when the change is not meaningful.
    public func applying(_ change: ConfChange) throws(ConfChangeError) -> ConfState {
        guard change.node != .none else { throw .invalidNode }
        var voters = self.voters
        var learners = self.learners
        switch change.kind {
        case .addVoter:
            learners.removeAll { $0 == change.node }
            if !voters.contains(change.node) { voters.append(change.node) }
        case .addLearner:
            voters.removeAll { $0 == change.node }
            if !learners.contains(change.node) { learners.append(change.node) }
        case .remove:
            guard voters.contains(change.node) || learners.contains(change.node) else { throw .notMember }
            voters.removeAll { $0 == change.node }
            learners.removeAll { $0 == change.node }
        case .promote:
            guard learners.contains(change.node) else { throw .notLearner }
            learners.removeAll { $0 == change.node }
            voters.append(change.node)
        }
        if voters.isEmpty { throw .noVotersLeft }
        return ConfState(voters: voters, learners: learners)
    }
}

/// Why a membership change was refused.
public enum ConfChangeError: Error, Sendable, Hashable {
    case invalidNode
    case noVotersLeft
    /// Removing a node that is not in the configuration.
    case notMember
    /// Promoting a node that is not a learner.
    case notLearner
}
