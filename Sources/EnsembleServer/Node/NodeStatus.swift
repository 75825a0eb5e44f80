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
    /// For a membership check (``NodeLoop/proposeConfChange(checked:)``),
    /// empty otherwise: the peers heard from within an election timeout
    /// (etcd: connected)…
    public var connectedPeers: Set<NodeID> = []
    /// …and those among them heard without a longer break for at least
    /// ``healthInterval`` (etcd: connected since its health interval).
    public var healthyPeers: Set<NodeID> = []
    /// etcd's HealthInterval.
    public static let healthInterval = Duration.seconds(5)
    /// Proposals waiting to be applied.
    public var pendingProposals = 0
    /// The index of the latest snapshot saved in the member's data directory.
    public var snapshotIndex: UInt64 = 0
}
