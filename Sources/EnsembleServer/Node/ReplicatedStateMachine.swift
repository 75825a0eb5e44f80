import Raft

/// What a node replicates: the application's state machine, fed committed
/// entries in log order by the node loop (and only by it).
public protocol ReplicatedStateMachine: AnyObject, SendableMetatype {
    /// The result a proposer receives for an applied entry.
    associatedtype Result: Sendable
    /// Applies one committed normal entry's data.
    func apply(_ data: [UInt8], index: UInt64) -> Result
    /// Runs a read against the current state (called once the read is linearizable).
    associatedtype ReadResult: Sendable
    associatedtype Query: Sendable
    func read(_ query: Query) -> ReadResult
    /// The whole state, for Raft snapshots.
    func snapshot() -> [UInt8]
    /// The whole state now, captured quickly on the loop thread; the closure
    /// encodes it (as ``snapshot()`` would have) on any thread, later, while
    /// the machine goes on applying. The default encodes at once.
    func freezeSnapshot() -> @Sendable () -> [UInt8]
    /// ``freezeSnapshot()`` for writing to a file without holding the
    /// encoded state whole. The default encodes at once.
    func freezeSnapshotStream() -> FrozenSnapshot
    /// Replaces the state with a snapshot's.
    func restore(_ data: [UInt8]) throws
    /// About how many bytes a snapshot of the state would take now, if that
    /// is cheap to know (nil otherwise): lets a state that shrank since the
    /// last snapshot (compaction) be snapshotted sooner. Apply thread only.
    var approximateStateBytes: Int? { get }
    /// This member became leader or stopped being one. A new leader hears of
    /// it once the entries of earlier terms are applied (just before the first
    /// entry of its own term); a step-down at once, before the Ready that
    /// shows it is applied.
    func roleChanged(isLeader: Bool)
    /// Called on the leader once per loop cycle in which time advanced; returns
    /// entries the machine itself wants proposed (lease expiries, checkpoints).
    /// Their outcome is not reported: the machine sees them when they apply.
    func leaderTick() -> [[UInt8]]
    /// A committed membership change, in log order with ``apply(_:index:)``.
    /// `accepted`: whether Raft applies it (a change that no longer fits the
    /// configuration is ignored by Raft). The result answers its proposer;
    /// nil answers it as failed.
    func applyConfChange(_ change: ConfChange, accepted: Bool, index: UInt64) -> Result?
    /// Whether a normal entry changes what membership checks read (a
    /// member's peer URLs): a membership change checked before such an
    /// entry applied is checked again after it (as one checked before a
    /// pending conf change is). Must be cheap: asked of every entry appended.
    static func affectsMembershipChecks(_ data: [UInt8]) -> Bool
}

extension ReplicatedStateMachine {
    public func roleChanged(isLeader: Bool) {}
    public func freezeSnapshot() -> @Sendable () -> [UInt8] {
        let bytes = snapshot()
        return { bytes }
    }
    public func freezeSnapshotStream() -> FrozenSnapshot {
        let encode = freezeSnapshot()
        return FrozenSnapshot(count: { encode().count }, write: { _, sink in sink(encode()) })
    }
    public func leaderTick() -> [[UInt8]] { [] }
    public var approximateStateBytes: Int? { nil }
    public func applyConfChange(_ change: ConfChange, accepted: Bool, index: UInt64) -> Result? { nil }
    public static func affectsMembershipChecks(_ data: [UInt8]) -> Bool { false }
}

/// A state frozen by ``ReplicatedStateMachine/freezeSnapshotStream()``,
/// encoded later on any thread: `count` gives the exact encoded size (cheap),
/// `write` produces the same bytes in chunks of about `chunk` bytes, stopping
/// when `sink` returns false, and returns whether every chunk was taken.
public struct FrozenSnapshot: Sendable {
    public var count: @Sendable () -> Int
    public var write: @Sendable (_ chunk: Int, _ sink: @escaping ([UInt8]) -> Bool) -> Bool

    public init(count: @escaping @Sendable () -> Int, write: @escaping @Sendable (Int, @escaping ([UInt8]) -> Bool) -> Bool) {
        self.count = count
        self.write = write
    }
}

/// Why a node could not serve a request. Messages are etcd's where etcd has one.
public enum NodeError: Error, Sendable, Equatable, CustomStringConvertible {
    case notLeader(leader: NodeID)
    case noLeader
    case leaderChanged
    case stopped
    case proposalDropped(String)
    /// The proposal may or may not have been applied (its entry was covered by a
    /// snapshot this member installed); etcd reports such a wait as timed out.
    case outcomeUnknown
    /// The state machine is too far behind the log to take more proposals.
    case tooManyRequests

    public var description: String {
        switch self {
        case let .notLeader(leader): "etcdserver: not leader (leader is \(leader))"
        case .noLeader: "etcdserver: no leader"
        case .leaderChanged: "etcdserver: leader changed"
        case .stopped: "etcdserver: server stopped"
        case let .proposalDropped(why): "etcdserver: request cancelled (\(why))"
        case .outcomeUnknown: "etcdserver: request timed out"
        case .tooManyRequests: "etcdserver: too many requests"
        }
    }
}
