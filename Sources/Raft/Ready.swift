/// A member's role (Raft paper §5.1, plus the pre-candidate of thesis §9.6).
public enum Role: Sendable, Equatable {
    case follower, preCandidate, candidate, leader
}

/// Volatile state worth reporting: who leads, and our role.
public struct SoftState: Sendable, Equatable {
    public var leader: NodeID
    public var role: Role
}

/// The answer to a ReadIndex request: once the state machine has applied
/// `index`, a read made then is linearizable (thesis §6.4).
public struct ReadState: Sendable, Equatable {
    public var index: UInt64
    public var context: [UInt8]
}

/// The leader's answer to proposals this follower forwarded
/// (``RaftNode/forward(_:context:)``): they were appended from `index` on in
/// `term` — each then succeeded if and only if the entry applied at its index
/// has that term, as for ``RaftNode/propose(_:)`` — or, when `index` is nil,
/// the receiver did not take them: they certainly did not happen, unless
/// `outcomeUnknown` (the receiver may have led this term and taken an earlier
/// copy of the same message). `handingOver`: refused by a leader handing
/// leadership over; its successor will take them.
public struct ForwardedProposals: Sendable, Equatable {
    public var context: [UInt8]
    public var index: UInt64?
    public var term: UInt64
    public var outcomeUnknown = false
    public var handingOver = false
}

/// Everything the driver must do after `step`/`tick`/`propose`. Handle the fields
/// in this order, then call ``RaftNode/advance(_:)`` with the same value:
///
/// 1. Send `messages` at any time, even before persisting: they are a leader's
///    AppendEntries/heartbeats/snapshots, which do not depend on this node's
///    unpersisted state (a leader writes its own log in parallel, thesis §10.2.1;
///    it counts itself toward a quorum only after `advance`).
/// 2. Persist `snapshot` (if any), then `entries` (replacing any stored entries
///    from the first one's index on), then `hardState` (if any) — atomically, as
///    one unit, and durably (fsync) when `mustSync`: nothing later may be done
///    before it is. A hard state that only moves the commit index need not be
///    synced (etcd-io/raft's MustSync): a crash may lose it and the member then
///    restarts with an older commit index and learns the rest from the leader,
///    as it would after any restart; the entries it covered were synced when they
///    were appended. A later sync covers it.
/// 3. Send `messagesAfterPersist`: votes and acknowledgements that promise what
///    was just persisted (Figure 2: persist before responding).
/// 4. Apply `snapshot` (if any), then `committedEntries` in order, to the state machine.
///    Committed entries are always covered by step 2 of this or an earlier Ready.
/// 5. Answer `readStates` once the applied index reaches each one's index.
///    Track `forwarded` proposals by the index the leader gave them.
///
/// Between `ready()` and `advance(_:)` the node must not be stepped, ticked or
/// proposed to: one serial loop runs the whole cycle (batching many proposals
/// and messages into each cycle is what makes it cheap). The driver must also
/// report every snapshot it sends with ``RaftNode/reportSnapshot(to:succeeded:)``
/// and may report unreachable peers with ``RaftNode/reportUnreachable(_:)``;
/// a follower waiting for a snapshot is not sent anything else until then.
public struct Ready: Sendable {
    public var softState: SoftState?
    public var hardState: HardState?
    public var entries: [Entry] = []
    public var snapshot: Snapshot?
    public var committedEntries: [Entry] = []
    public var messages: [Message] = []
    public var messagesAfterPersist: [Message] = []
    public var readStates: [ReadState] = []
    public var forwarded: [ForwardedProposals] = []

    public init() {}

    /// Whether step 2 has anything to write.
    public var needsPersist: Bool { hardState != nil || !entries.isEmpty || snapshot != nil }
    /// Whether step 2 must be durable before the rest: it holds entries, a
    /// snapshot, a new term or vote (a vote forgotten in a crash could be
    /// given twice in one term), or a commit index that passes a membership
    /// change. Set by ``RaftNode/ready()``.
    public var mustSync = false
}
