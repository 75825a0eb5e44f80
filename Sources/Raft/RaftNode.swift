/// A Raft member as a pure, deterministic state machine (etcd-io/raft's RawNode
/// shape). It does no I/O and reads no clock: the driver calls ``tick()`` for time,
/// ``step(_:)`` for messages, ``propose(_:)`` for client writes, then takes a
/// ``Ready`` and reports it done with ``advance(_:)``. The contract for each Ready
/// field is documented on ``Ready``; docs/raft.md describes the whole protocol.
///
/// Not thread-safe: one driver loop owns it.
public struct RaftNode<Storage: RaftLogStorage> {
    public let id: NodeID
    let config: RaftConfig

    // Persistent state (Figure 2), reported through Ready.hardState.
    public internal(set) var term: UInt64 = 0
    public internal(set) var vote: NodeID = .none
    var log: RaftLog<Storage>

    // Volatile state.
    public internal(set) var role: Role = .follower
    public internal(set) var leader: NodeID = .none
    /// The membership in force: the last one applied.
    public internal(set) var confState: ConfState
    /// The index of a committed membership change this binary could not
    /// decode: from then on the configuration is unknown here and the node
    /// never campaigns (the server stops it once it applies that far).
    public internal(set) var unreadableConfChange: UInt64?
    /// Leader only: one entry per member, this node included.
    var progress: [NodeID: Progress] = [:]

    /// On the leader: the highest log index known to be replicated on each
    /// member (itself included); empty elsewhere. For promoting learners only
    /// once they have caught up, and for status pages.
    public var matchIndexes: [NodeID: UInt64] {
        guard role == .leader else { return [:] }
        return progress.mapValues(\.match)
    }
    /// Leader only: the peers heard from since the last quorum check (at most
    /// an election timeout ago; none just after a check).
    public var activePeers: Set<NodeID> {
        guard role == .leader else { return [] }
        return Set(progress.filter { $0.key != id && $0.value.recentActive }.keys)
    }
    /// Candidate/pre-candidate only: votes received this round.
    var votes: [NodeID: Bool] = [:]

    var electionElapsed = 0
    /// Leader only: ticks since it became leader; the clock of its lease.
    var leaderTicks = 0
    /// With lease reads, a restarted member honours the lease it may have granted
    /// before the crash: it ignores vote requests for an election timeout.
    var restartLeaseTicks = 0
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0
    var random: SplitMix64

    /// Leader only: the member leadership is being handed to, or none.
    var leadTransferee: NodeID = .none
    /// Leader only, once removed: voters it has tried to hand over to, so a
    /// retry moves on from one that is down (cleared when all were tried).
    var handOverTried: Set<NodeID> = []
    /// A TimeoutNow that came while a committed membership change was not yet
    /// applied (the leader's commit and its TimeoutNow are often stepped in
    /// one batch): its term and the ticks it stays good for (a heartbeat
    /// interval, well inside the leader's election timeout). The campaign
    /// follows once the change has applied (review finding: the TimeoutNow
    /// was dropped, and a removed leader's hand-over with it).
    var deferredTransfer: (term: UInt64, ticksLeft: Int)?
    /// Leader only: index of the latest membership change proposed; a new one
    /// waits until it is applied.
    var pendingConfIndex: UInt64 = 0
    /// Leader only: AppendEntries must go out at the next Ready (batched).
    var needsBroadcast = false
    var reads = ReadIndexState()

    // Output collected for the next Ready.
    var messages: [Message] = []
    var messagesAfterPersist: [Message] = []
    var readStates: [ReadState] = []
    /// Answers to forwarded proposals, for the next Ready.
    var forwarded: [ForwardedProposals] = []
    /// On the leader: forwarded batches taken this term (duplicate detection).
    var forwardedBatches = ForwardedBatches()
    var previousHardState: HardState
    /// The hard state the driver last reported durable; a leader's messages wait
    /// for persistence while its term or vote is newer than this.
    var persistedHardState: HardState
    var previousSoftState: SoftState

    /// Creates a member from what `storage` holds (empty for a new member).
    /// Throws when the configuration is invalid or storage cannot be read.
    public init(config: RaftConfig, storage: Storage) throws(RaftError) {
        if let problem = config.validate() { throw .invalidConfig(problem) }
        let state: (hardState: HardState, confState: ConfState)
        do { state = try storage.initialState() } catch { throw .storage(error) }
        self.id = config.id
        self.config = config
        self.random = SplitMix64(seed: config.seed &+ config.id &* 0x9E37_79B9)
        self.log = RaftLog(
            storage: storage, committed: state.hardState.commit, applied: config.applied,
            maxApplyBytes: config.maxCommittedSizePerReady)
        self.confState = state.confState
        self.term = state.hardState.term
        self.vote = state.hardState.vote
        self.previousHardState = state.hardState
        self.persistedHardState = state.hardState
        self.restartLeaseTicks = config.readOnly == .leaseBased ? config.electionTick : 0
        self.previousSoftState = SoftState(leader: .none, role: .follower)
        replayAppliedConfChanges()
        becomeFollower(term: term, leader: .none)
    }

    /// Membership changes between the snapshot and the applied index were applied
    /// before the restart; bring the configuration up to date with them.
    private mutating func replayAppliedConfChanges() {
        let first = log.firstIndex
        guard log.applied >= first,
            let entries = try? log.slice(first, log.applied + 1, maxBytes: .max)
        else { return }
        for entry in entries where entry.kind == .confChange {
            applyConfChange(entry)
        }
    }

    /// Every other member, in id order (deterministic: no dictionary iteration).
    var peers: [NodeID] {
        (confState.voters + confState.learners).filter { $0 != id }.sorted()
    }

    /// Whether this member may campaign: only voters do.
    var isPromotable: Bool { confState.isVoter(id) }

    public var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    public var softState: SoftState { SoftState(leader: leader, role: role) }
    public var commitIndex: UInt64 { log.committed }
    public var appliedIndex: UInt64 { log.applied }
    /// Leader only: the index of the latest membership change that may be in
    /// the log (on election, the last index); a new change is refused until it
    /// is applied.
    public var pendingConfChangeIndex: UInt64 { pendingConfIndex }
    public var lastIndex: UInt64 { log.lastIndex }
    /// Entries in the log not yet persisted: those appended since the last
    /// Ready was advanced (a driver checking what entered the log in its
    /// current cycle, before the next Ready hands them out).
    public var unpersistedEntries: [Entry] { log.unstable.entries }
    public var firstIndex: UInt64 { log.firstIndex }
    public func term(at index: UInt64) -> UInt64? { log.term(at: index) }

    /// The leader's view of a follower's replication, for status pages and tests.
    public func replicationStatus(of peer: NodeID) -> (match: UInt64, next: UInt64)? {
        guard role == .leader, let pr = progress[peer] else { return nil }
        return (pr.match, pr.next)
    }

    /// Queues a message for the next Ready. A leader's messages may leave before
    /// its own write completes; everyone else's wait for persistence (see ``Ready``).
    mutating func send(_ message: Message) {
        var message = message
        message.from = id
        if message.term == 0 { message.term = term }
        if role == .leader {
            messages.append(message)
        } else {
            messagesAfterPersist.append(message)
        }
    }
}

/// Errors from driving a ``RaftNode``.
public enum RaftError: Error, Sendable, Equatable {
    case invalidConfig(String)
    case storage(StorageError)
}

/// Why a proposal was not appended. The caller retries elsewhere or later.
public enum ProposalError: Error, Sendable, Equatable {
    /// Only the leader appends; `leader` is the one this member knows, or none.
    case notLeader(leader: NodeID)
    /// Leadership is being handed over; proposals wait until it is done.
    case leadershipTransferInProgress
    /// A membership change is still being applied; one at a time.
    case confChangeInProgress
    /// The leader has not yet committed an entry of its own term, so a membership
    /// change now could be unsafe (Ongaro, raft-dev 2015).
    case leaderNotReady
    case invalidConfChange(ConfChangeError)
    /// The target of a leader transfer is not a voter of this group.
    case unknownTransferTarget(NodeID)
}
