/// How a ``RaftNode`` behaves. Times are in ticks: the driver decides how long a
/// tick is (Ensemble's server uses 100 ms, like etcd).
public struct RaftConfig: Sendable {
    /// This member's id; never ``NodeID/none``.
    public var id: NodeID
    /// Ticks without hearing from a leader before a follower campaigns. The actual
    /// timeout is drawn from `[electionTick, 2 * electionTick)` (§5.2).
    public var electionTick: Int = 10
    /// Ticks between leader heartbeats. Must be less than `electionTick`.
    public var heartbeatTick: Int = 1
    /// Index the application had already applied when restarting; committed
    /// entries after it are handed out again.
    public var applied: UInt64 = 0
    /// Bytes of entries per AppendEntries message (batching).
    public var maxSizePerMessage: Int = 1 << 20
    /// AppendEntries messages in flight per follower (pipelining window).
    public var maxInflightMessages: Int = 256
    /// Bytes in flight per follower; 0 for no limit.
    public var maxInflightBytes: Int = 0
    /// Bytes of committed entries handed out per Ready.
    public var maxCommittedSizePerReady: Int = 64 << 20
    /// Run a pre-vote round before campaigning (thesis §9.6).
    public var preVote: Bool = true
    /// A leader steps down when it has not heard from a quorum for an election
    /// timeout, and followers ignore votes while they hear from a leader (§6.2, §9.6).
    public var checkQuorum: Bool = true
    /// How ReadIndex requests are confirmed.
    public var readOnly: ReadOnlyOption = .safe
    /// Seeds the election-timeout randomness, so runs are reproducible.
    public var seed: UInt64 = 1
    /// Deliberately broken rules, so the simulation can prove it catches them.
    /// Never set outside tests.
    public var brokenRules: BrokenRules = []

    public init(id: NodeID) { self.id = id }

    /// Checks the settings; returns a message for the first bad one.
    public func validate() -> String? {
        if id == .none { return "node id must not be 0" }
        if heartbeatTick <= 0 { return "heartbeatTick must be positive" }
        if electionTick <= heartbeatTick { return "electionTick must be greater than heartbeatTick" }
        if maxInflightMessages <= 0 { return "maxInflightMessages must be positive" }
        if maxSizePerMessage <= 0 { return "maxSizePerMessage must be positive" }
        if readOnly == .leaseBased && !checkQuorum { return "lease-based reads need checkQuorum" }
        return nil
    }
}

/// How a leader confirms it is still leader before answering a ReadIndex.
public enum ReadOnlyOption: Sendable, Equatable {
    /// A heartbeat round acknowledged by a quorum (thesis §6.4). The default.
    case safe
    /// Trust the leader lease kept by check-quorum. Correct only while clock drift
    /// stays under the election timeout (thesis §6.4.1); off unless asked for.
    case leaseBased
}

/// Rules the harness self-tests can switch off to show the checks fail
/// (FoundationDB and TigerBeetle test their simulators the same way).
public struct BrokenRules: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Grant a vote to every candidate, even a second one in the same term.
    public static let grantEveryVote = BrokenRules(rawValue: 1 << 0)
    /// Commit entries of earlier terms by counting replicas (Figure 8's bug).
    public static let commitPreviousTermByCounting = BrokenRules(rawValue: 1 << 1)
}
