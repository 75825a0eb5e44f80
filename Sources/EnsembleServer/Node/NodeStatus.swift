import Raft

/// A snapshot of a node's Raft state, published by the loop after every cycle
/// for status endpoints, metrics and tests.
public struct NodeStatus: Sendable, Equatable {
    public var id: NodeID
    public var role: Role = .follower
    public var leader: NodeID = .none
    public var term: UInt64 = 0
    public var commitIndex: UInt64 = 0
    public var appliedIndex: UInt64 = 0
    public var voters: [NodeID] = []
    public var learners: [NodeID] = []
    public var running = false
    /// On the leader: each member's replicated log position (``Raft/RaftNode/matchIndexes``).
    public var matchIndexes: [NodeID: UInt64] = [:]
    /// On the leader: the peers heard from lately (``Raft/RaftNode/activePeers``).
    public var activePeers: Set<NodeID> = []
    /// On the leader: when each peer was last among ``activePeers`` (as seen
    /// once per loop cycle); whom a membership check may count as up.
    public var lastHeard: [NodeID: ContinuousClock.Instant] = [:]
    /// Proposals waiting to be applied.
    public var pendingProposals = 0
    /// The index of the latest snapshot saved in the member's data directory.
    public var snapshotIndex: UInt64 = 0
}
