import Dispatch
import Foundation
import Raft
import RaftTransport
import RaftStorage
import Synchronization

/// Runs one member: the single serial loop that owns a ``RaftNode`` and its
/// durable log, beside an ``Applier`` thread that owns the replicated state
/// machine. Everything that reaches Raft — client proposals and reads, peer
/// messages, ticks — goes through one inbox and is handled in batches: many
/// proposals become one Ready, one WAL write with one fdatasync, one transport
/// call. Committed entries go to the applier with the replies waiting on them;
/// clients are answered by callback from there, with no actor hop per request.
/// A slow apply never delays the loop: heartbeats and WAL writes go on.
///
/// Thread safety: the inbox and the published status are locked; everything else
/// belongs to the loop thread (hence `@unchecked Sendable`).
public final class NodeLoop<Machine: ReplicatedStateMachine>: @unchecked Sendable {
    public struct Options: Sendable {
        public var tickInterval: Duration = .milliseconds(100)
        /// Take a snapshot after this many applied entries…
        public var snapshotEvery: UInt64 = 10_000
        /// …once they also hold this many times the last snapshot's size in
        /// bytes. A snapshot rewrites the whole state, so taking one every
        /// `snapshotEvery` entries alone makes the bytes written for
        /// snapshots grow with the state: a store that only grows writes 1,
        /// 2, 3… times its first snapshot, and a 1 GB history is rewritten
        /// for every 100 MB of writes. With this bound the snapshot bytes stay
        /// within `1 / snapshotLogRatio` times the log's bytes (2× at 0.5), at
        /// the price of keeping up to that fraction of the state as log (in
        /// memory and in the WAL) behind the latest snapshot. A state that
        /// stays small (overwrites, compaction) is snapshotted by count.
        /// 0: by count alone, as etcd (whose snapshots do not copy its store).
        public var snapshotLogRatio: Double = 0.5
        /// New proposals are refused with ``NodeError/tooManyRequests`` while
        /// the applier is more than this many entries behind the commit index
        /// (etcd's maxGapBetweenApplyAndCommitIndex).
        public var maxApplyLag: UInt64 = 5_000
        /// Entries kept behind a snapshot for slow followers.
        public var snapshotKeep: UInt64 = 5_000
        /// A proposal or read not answered by then fails: a proposal with
        /// ``NodeError/outcomeUnknown`` (it may still commit), a read with
        /// ``NodeError/leaderChanged`` (retry). etcd waits 5 s plus the election
        /// timeout. Once committed and handed to the applier, a proposal (or a
        /// confirmed read) is answered when applied, however long that takes.
        public var requestTimeout: Duration = .seconds(7)
        /// A follower forwards proposals to its leader over the Raft transport
        /// (one message per cycle) instead of refusing them with ``NodeError/notLeader(leader:)``.
        public var forwardProposals = true
        /// Group commit under load: while at least `batchingMinimumInFlight`
        /// proposals and reads made on this member wait for their answer, a
        /// cycle starts no sooner than `batchingWindow` after the previous one,
        /// so that one WAL sync, one message per peer and one apply batch carry
        /// what arrived meanwhile. A fast disk otherwise lets the loop run a
        /// cycle for nearly every request, and those per-cycle costs (fsync,
        /// peer writes, thread wake-ups) then dominate. With fewer requests
        /// in flight every cycle runs at once: measured on 2 cores (3
        /// members), the window gains ~4% at 1,000 in flight but costs 10–14%
        /// at 30–100 (answers come later, clients send later) and a tenth of
        /// `etcdctl check perf --load=l`'s rate (BENCHMARKS.md), hence 256.
        public var batchingWindow: Duration = .milliseconds(1)
        public var batchingMinimumInFlight = 256
        /// Hears syncs, applies and leader changes (metrics).
        public var observer: (any NodeObserver)?
        public init() {}
    }

    typealias ProposalReply = @Sendable (Result<Machine.Result, NodeError>) -> Void

    /// What a membership check made of the leader's state: the change to
    /// propose, or the answer to give instead.
    public enum ConfChangeDecision: Sendable {
        case propose(ConfChange)
        case refuse(Machine.Result)
    }

    /// Decides a membership change on the leader's machine (apply thread),
    /// given the leader's status.
    public typealias ConfChangeCheck = @Sendable (Machine, NodeStatus) -> ConfChangeDecision
    typealias ReadReply = @Sendable (Result<Machine.ReadResult, NodeError>) -> Void

    /// A read: the applier job that serves it (once the applier has applied
    /// up to the read index, for a linearizable one) and how it fails.
    struct ReadJob {
        let serve: Applier<Machine>.Job
        let fail: @Sendable (NodeError) -> Void
    }

    enum Work {
        /// Peer messages, with when the transport handed them over.
        case messages([Message], received: ContinuousClock.Instant)
        case propose([UInt8], ProposalReply)
        /// A membership change decided by `check` on the leader's machine
        /// (``proposeConfChange(checked:)``); `attempt` counts re-checks.
        case checkConfChange(ConfChangeCheck, ProposalReply, attempt: Int)
        /// What the check decided, from the state applied through `checkedAt`.
        case checkedConfChange(ConfChangeDecision, checkedAt: UInt64, ConfChangeCheck, ProposalReply, attempt: Int)
        case read(ReadJob, linearizable: Bool)
        case campaign
        case transfer(NodeID)
        /// Entries the machine wants proposed on the leader (fire and forget).
        case machineProposals([[UInt8]])
        /// A snapshot's file was written in the background (or failed).
        case snapshotWritten(SnapshotMetadata, Result<Int, WALError>, started: ContinuousClock.Instant)
        /// The applier could not go on (a snapshot failed to restore).
        case applyFailed

        /// A client's request, which waits for an answer.
        var isRequest: Bool {
            switch self {
            case .propose, .checkConfChange, .checkedConfChange, .read: true
            default: false
            }
        }
    }

    /// How often the watchdog looks at the loop.
    static var watchdogPeriod: Duration { .seconds(1) }

    struct Inbox {
        var work: [Work] = []
        /// When each request in `work` was queued (uptime nanoseconds; 0 for
        /// the loop's own work), for the watchdog.
        var queuedAt: [UInt64] = []
        var stopping = false

        mutating func removeAll(keepingCapacity: Bool = false) {
            work.removeAll(keepingCapacity: keepingCapacity)
            queuedAt.removeAll(keepingCapacity: keepingCapacity)
        }
    }

    /// What the loop shares with other threads: its inbox, the semaphore
    /// that wakes it, and the status it publishes.
    final class Shared: Sendable {
        let inbox = Mutex(Inbox())
        let wakeup = DispatchSemaphore(value: 0)
        let published: Mutex<NodeStatus>
        /// Proposals and reads made through the public API, not yet answered.
        let inFlight = Atomic<Int>(0)
        /// Whether this member is a learner, readable on every request.
        let learner = Atomic<Bool>(false)
        /// Whether this member knows a leader, readable on every request.
        let knowsLeader = Atomic<Bool>(false)

        init(id: NodeID) { published = Mutex(NodeStatus(id: id)) }

        /// Queues `work` for the loop; false once the loop stopped taking work.
        func enqueue(_ work: Work) -> Bool {
            // Only the first item of a batch signals: the loop takes the whole
            // inbox at once, and a signal per item would pile up under load
            // (the loop would spin through them once the load ends).
            let now = work.isRequest ? DispatchTime.now().uptimeNanoseconds : 0
            let (accepted, first) = inbox.withLock { inbox -> (Bool, Bool) in
                guard !inbox.stopping else { return (false, false) }
                inbox.work.append(work)
                inbox.queuedAt.append(now)
                return (true, inbox.work.count == 1)
            }
            if first { wakeup.signal() }
            return accepted
        }

        /// Takes the requests queued before `cutoff` (uptime nanoseconds)
        /// out of the inbox, leaving the rest in order.
        func takeRequests(queuedBefore cutoff: UInt64) -> [Work] {
            inbox.withLock { inbox in
                guard let oldest = inbox.queuedAt.first(where: { $0 != 0 }), oldest < cutoff else { return [] }
                var requests: [Work] = []
                var kept: [Work] = []
                var keptAt: [UInt64] = []
                for (work, at) in zip(inbox.work, inbox.queuedAt) {
                    if at != 0 && at < cutoff {
                        requests.append(work)
                    } else {
                        kept.append(work)
                        keptAt.append(at)
                    }
                }
                inbox.work = kept
                inbox.queuedAt = keptAt
                return requests
            }
        }
    }

    public let id: NodeID
    private let options: Options
    private let transport: any PeerTransport
    private let shared: Shared
    /// Left when the loop thread has released the data directory; every
    /// ``stop()`` waits on it (a second caller returned at once, before the
    /// directory could be opened again: review finding).
    private let finished = DispatchGroup()
    private let applier: Applier<Machine>

    // Loop-thread state.
    private var raft: RaftNode<DiskStorage>
    private let storage: DiskStorage
    private var proposals: [UInt64: (term: UInt64, reply: ProposalReply, deadline: ContinuousClock.Instant)] = [:]
    /// Reads waiting on a ReadIndex round, with the leadership they were
    /// asked under: those of one cycle share a round (one context; on a
    /// follower one request to the leader).
    private var reads: [UInt64: (jobs: [ReadJob], deadline: ContinuousClock.Instant, under: Leadership)] = [:]
    /// This cycle's read context, while its round is not asked yet.
    private var cycleRead: UInt64?
    /// What this cycle asks of the leader and Raft never resends: forwarded
    /// proposal batches and follower read rounds, by context. If the
    /// transport drops them unsent, they fail at once instead of at their
    /// deadline (``failUnsent(dropped:)``).
    private var askedOfLeader: (forwarded: [UInt64], reads: [UInt64]) = ([], [])
    private var confirmedReads: [(index: UInt64, context: UInt64)] = []
    /// When each peer was last heard from, and since when without a break
    /// longer than an election timeout (etcd: connected since), for
    /// membership checks (``NodeStatus/connectedPeers``). Counted in this
    /// loop's ticks, not wall time: a stalled loop runs no ticks (and sends
    /// no heartbeats), so peers do not look gone because it went quiet.
    private var contact: [NodeID: (since: UInt64, last: UInt64)] = [:]
    /// Ticks this loop has run.
    private var ticks: UInt64 = 0
    /// When the heartbeat being timed went to each peer (one at a time, for
    /// ``NodeObserver/peerRoundTrip(to:duration:)``).
    private var heartbeatSent: [NodeID: (round: [UInt8], at: ContinuousClock.Instant)] = [:]
    /// When this leader last sent each peer a heartbeat, and the longest gap
    /// that is on time (two heartbeat intervals: etcd's timeout detector).
    private var lastHeartbeat: [NodeID: ContinuousClock.Instant] = [:]
    private let heartbeatDeadline: Duration
    /// The WAL's byte count at the last report.
    private var walBytesReported = 0
    /// The last entry appended that membership checks must see applied
    /// (``ReplicatedStateMachine/affectsMembershipChecks(_:)``), with its
    /// term: one a new leader's log replaced no longer counts.
    private var lastMembershipEntry: (index: UInt64, term: UInt64) = (0, 0)
    /// A silence longer than this is a break in contact (an election timeout).
    private let contactBreak: UInt64
    /// etcd's health interval, in ticks.
    private let healthTicks: UInt64
    /// Proposals made on this follower in the current cycle, forwarded to the
    /// leader as one batch at its end.
    /// This cycle's proposals for the leader; `deadline` set for those sent
    /// before and dropped unsent (they keep their first one).
    private var toForward: [(data: [UInt8], reply: ProposalReply, deadline: ContinuousClock.Instant?)] = []
    /// Forwarded proposals the transport dropped unsent, to go again
    /// (``redispatchUnsent()``) until their first deadline.
    private var unsent: [(data: [UInt8], reply: ProposalReply, deadline: ContinuousClock.Instant)] = []
    /// Forwarded batches waiting for the leader's answer, by context.
    private var forwarded: [UInt64: ForwardedBatch] = [:]
    /// Proposals a leader refused while it hands leadership over (a rolling
    /// restart's graceful stop, MoveLeader) — this member's own, or a batch
    /// it forwarded that the leader marked so — which certainly did not happen. They wait, within their deadline, until the
    /// leader or term changes (then go to the new leader) or an election
    /// timeout passes (the hand-over was abandoned: offered again), instead of
    /// failing with "not leader" mid hand-over. `since`: in ticks.
    private var awaitingHandover:
        [(data: [UInt8], reply: ProposalReply, deadline: ContinuousClock.Instant, leader: NodeID, term: UInt64, since: UInt64)] = []
    /// Proposals and linearizable reads made while no leader is known, in
    /// arrival order: an election usually ends within an election timeout,
    /// so they wait up to `noLeaderWait` for one (as etcd's raft node stops
    /// taking proposals, and its read loop retries, without a leader) and
    /// fail with ``NodeError/noLeader`` after that.
    private var held: [(work: Work, deadline: ContinuousClock.Instant)] = []
    /// How long a request waits for a leader to be known: two election timeouts.
    public let noLeaderWait: Duration

    struct ForwardedBatch {
        var replies: [ProposalReply]
        /// The proposals, kept until the leader answers: sent again if the
        /// transport dropped them unsent.
        var data: [[UInt8]]
        var deadline: ContinuousClock.Instant
        /// Whom it went to, in which term: only a change from that fails it early.
        var leader: NodeID
        var term: UInt64
    }
    /// Read contexts start at a random value each start, so a reply meant for
    /// this member's previous incarnation can never answer a new read.
    private var nextReadContext = UInt64.random(in: 1...(UInt64.max / 2))
    typealias Leadership = (leader: NodeID, role: Role, term: UInt64)
    /// Leader, role and term at the last Ready: a change fails the reads
    /// asked under another.
    private var lastLeadership: Leadership?
    /// The latest snapshot installed in storage (for the status).
    private var lastSnapshotIndex: UInt64
    /// Reads served on the leader's lease: time must then be caught up first.
    private let leaseReads: Bool
    /// The applier could not restore a snapshot: the member stops.
    private var applyFailed = false
    /// The commit index when the member started.
    /// The commit index this start found in the log: entries up to it are
    /// replayed from the log before anything new.
    let startCommit: UInt64
    /// The snapshot read failure last reported.
    private var reportedSnapshotFailure: String?

    /// Opens (or creates) the member's data directory and restores the state
    /// machine from the latest snapshot. `bootstrap` lists the founding voters
    /// for a brand-new member of a new cluster; it is ignored once the directory
    /// holds a log, as etcd ignores `--initial-cluster` on restart.
    public init(
        config: RaftConfig, directory: String, bootstrap: [NodeID]?, bootstrapContexts: [NodeID: [UInt8]] = [:],
        machine: Machine, transport: any PeerTransport, options: Options = Options()
    ) throws {
        let storage = try DiskStorage.open(directory: directory)
        if storage.lastIndex == 0, storage.hardState == HardState(), let voters = bootstrap {
            let boot = RaftNode<DiskStorage>.bootstrap(voters: voters, contexts: bootstrapContexts)
            try storage.append(hardState: boot.hardState, entries: boot.entries)
            try storage.sync()
        }
        let snapshot = try storage.readSnapshot()
        if !snapshot.isEmpty { try machine.restore(snapshot.data) }
        var config = config
        config.applied = snapshot.metadata.index
        self.raft = try RaftNode(config: config, storage: storage)
        self.id = config.id
        self.storage = storage
        self.transport = transport
        self.options = options
        let shared = Shared(id: config.id)
        // Known from the start, not only from the loop's first status: a
        // restarted learner is gated at once, as of its committed log (which
        // replay is about to apply), so also when it was added after the
        // last snapshot.
        let committed = Self.committedConfState(raft.confState, in: storage, after: snapshot.metadata.index)
        shared.learner.store(committed.learners.contains(config.id), ordering: .relaxed)
        self.shared = shared
        self.lastSnapshotIndex = snapshot.metadata.index
        self.startCommit = storage.hardState.commit
        self.leaseReads = config.readOnly == .leaseBased
        self.noLeaderWait = options.tickInterval * (2 * config.electionTick)
        self.contactBreak = UInt64(config.electionTick)
        self.heartbeatDeadline = options.tickInterval * (2 * config.heartbeatTick)
        self.healthTicks = UInt64((NodeStatus.healthInterval / options.tickInterval).rounded(.up))
        let hooks = Applier<Machine>.Hooks(
            propose: { _ = shared.enqueue(.machineProposals($0)) },
            snapshotWritten: { _ = shared.enqueue(.snapshotWritten($0, $1, started: $2)) },
            failed: { _ in _ = shared.enqueue(.applyFailed) },
            applied: { index in shared.published.withLock { $0.appliedIndex = max($0.appliedIndex, index) } })
        self.applier = Applier(
            machine: machine, snapshot: snapshot.metadata, snapshotBytes: snapshot.data.count,
            snapshotEvery: options.snapshotEvery, snapshotLogRatio: options.snapshotLogRatio,
            storageDirectory: storage.directory, observer: options.observer, label: "ensemble-node-\(config.id)",
            hooks: hooks)
    }

    private let lifecycle = Mutex((started: false, stopped: false))
    /// The loop thread has left its loop (the watchdog then ends).
    private let loopEnded = Atomic<Bool>(false)

    /// Starts the loop thread and connects to the transport. Calling it again
    /// does nothing.
    public func start() {
        // Once stopped, never started.
        guard lifecycle.withLock({ state -> Bool in
            defer { state.started = true }
            return !state.started && !state.stopped
        }) else { return }
        transport.register(id) { [weak self] messages in self?.enqueue(.messages(messages, received: .now)) }
        applier.start(name: "ensemble-apply-\(id)")
        finished.enter()
        let thread = Thread { [self] in
            self.run()
            self.loopEnded.store(true, ordering: .relaxed)
            // What was handed to the applier is applied and answered, and a
            // snapshot being written finishes, before the directory is released.
            self.applier.stop()
            // Release the data directory before anyone may reopen it.
            try? self.storage.close()
            self.finished.leave()
        }
        thread.name = "ensemble-node-\(id)"
        thread.start()
        watch()
    }

    /// The watchdog: a loop stuck in one cycle (a stalled disk holding an
    /// fdatasync, a huge snapshot being written) answers nothing, so a
    /// request that has waited in its inbox for longer than the request
    /// timeout is failed from here, as etcd's requests time out whatever its
    /// raft loop does ("request timed out"); those inside the stuck cycle
    /// time out by deadline once it ends. A running loop takes its whole
    /// inbox every cycle, so nothing else ever waits there that long. Looks
    /// once a second until the loop has stopped.
    private func watch() {
        let period = Self.watchdogPeriod
        DispatchQueue.global().asyncAfter(deadline: .now() + period.inSeconds) { [weak self] in
            guard let self, !self.loopEnded.load(ordering: .relaxed) else { return }
            // A loop that runs takes its whole inbox every cycle: only a stuck
            // one lets a request wait there this long.
            let now = DispatchTime.now().uptimeNanoseconds
            let timeout = UInt64(max(0, self.options.requestTimeout.inSeconds) * 1e9)
            if now > timeout {
                for work in self.shared.takeRequests(queuedBefore: now - timeout) { self.fail(work, .outcomeUnknown) }
            }
            self.watch()
        }
    }

    /// Stops the loop; waiting requests fail with ``NodeError/stopped``. Unsynced
    /// state is never left behind: a cycle syncs what it replies about, and
    /// closing the storage syncs the rest (a commit-only hard state).
    public func stop() {
        let (started, alreadyStopped) = lifecycle.withLock { state in
            defer { state.stopped = true }
            return (state.started, state.stopped)
        }
        let waiting = shared.inbox.withLock { inbox in
            inbox.stopping = true
            // Never started: nothing will take what waits; answer it here.
            defer { if !started { inbox.removeAll() } }
            return started ? [] : inbox.work
        }
        for work in waiting { fail(work, .stopped) }
        if !started && !alreadyStopped {
            applier.refuseAll()
            // The data directory's lock goes with it: it may be opened again.
            try? storage.close()
        }
        guard started else { return }
        if !alreadyStopped {
            transport.unregister(id)
            shared.wakeup.signal()
        }
        finished.wait()
    }

    public var status: NodeStatus { shared.published.withLock { $0 } }

    /// Whether this member is a learner (a non-voting member catching up), as
    /// of the last cycle; cheaper than ``status``.
    public var isLearner: Bool { shared.learner.load(ordering: .relaxed) }

    /// Whether this member knows a leader, as of the last cycle; cheaper than ``status``.
    public var knowsLeader: Bool { shared.knowsLeader.load(ordering: .relaxed) }

    /// Proposes `data`; returns what applying it produced once it is committed
    /// and applied here. A follower forwards it to its leader; while no
    /// leader is known it waits up to two election timeouts for one.
    public func propose(_ data: [UInt8]) async throws(NodeError) -> Machine.Result {
        let result: Result<Machine.Result, NodeError> = await withCheckedContinuation { continuation in
            propose(data) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// ``propose(_:)`` for callers that start no task per request (the gRPC
    /// KV handlers): `reply` runs once, on the loop or apply thread, and must be quick.
    public func propose(_ data: [UInt8], reply: @escaping @Sendable (Result<Machine.Result, NodeError>) -> Void) {
        enqueue(.propose(data, counted(reply)))
    }

    /// Proposes the membership change `check` decides on, checked against the
    /// state every earlier membership change has applied to: `check` runs on
    /// this leader's machine, and its change is proposed only if no other
    /// change entered the log after the state it saw (else it checks again).
    /// etcd validates each change as it applies; here Raft takes a change as
    /// it applies, so the check comes first, in line with the changes before
    /// it — two concurrent adds of one peer URL cannot both pass. A follower
    /// answers ``NodeError/notLeader(leader:)``. The result is what the
    /// machine made of the change when applied here
    /// (``ReplicatedStateMachine/applyConfChange(_:accepted:index:)``).
    public func proposeConfChange(checked check: @escaping ConfChangeCheck) async throws(NodeError) -> Machine.Result {
        let result: Result<Machine.Result, NodeError> = await withCheckedContinuation { continuation in
            proposeConfChange(checked: check) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// ``proposeConfChange(checked:)`` with a callback that runs once, on the
    /// loop or apply thread.
    public func proposeConfChange(
        checked check: @escaping ConfChangeCheck, reply: @escaping @Sendable (Result<Machine.Result, NodeError>) -> Void
    ) {
        enqueue(.checkConfChange(check, reply, attempt: 0))
    }

    /// Reads from the state machine. Linearizable reads wait for a ReadIndex
    /// round (thesis §6.4) and for this member to apply up to it; serializable
    /// reads are served from local state at once.
    public func read(_ query: Machine.Query, linearizable: Bool = true) async throws(NodeError) -> Machine.ReadResult {
        let result: Result<Machine.ReadResult, NodeError> = await withCheckedContinuation { continuation in
            read(query, linearizable: linearizable) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// ``read(_:linearizable:)`` with a callback that runs once, on the loop
    /// or apply thread, and must be quick.
    public func read(
        _ query: Machine.Query, linearizable: Bool, reply: @escaping @Sendable (Result<Machine.ReadResult, NodeError>) -> Void
    ) {
        let reply = counted(reply)
        enqueue(.read(ReadJob(serve: .read(query, reply), fail: { reply(.failure($0)) }), linearizable: linearizable))
    }

    /// Runs `body` on the machine once a ReadIndex round has confirmed that
    /// the leader this member knows still leads, and this member has applied
    /// up to its commit index: what `body` sees includes every write
    /// committed before the call (etcd's ensureLeadership and
    /// waitAppliedIndex, which lease renewals need). Fails as a linearizable
    /// read does: no leader, a change of leader, the request timeout — which
    /// counts here too when the loop itself is stuck (a stalled disk: then
    /// ``NodeError/outcomeUnknown``, "request timed out"), so the caller hears
    /// of it and its client can move to another member.
    public func withMachineConfirmed<T: Sendable>(_ body: @escaping @Sendable (Machine) -> T) async throws(NodeError) -> T {
        let result: Result<T, NodeError> = await withCheckedContinuation { continuation in
            withMachineConfirmed(body) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// ``withMachineConfirmed(_:)`` with a callback that runs once, on the
    /// apply or loop thread or a timer's, and must be quick.
    public func withMachineConfirmed<T: Sendable>(
        _ body: @escaping @Sendable (Machine) -> T, reply: @escaping @Sendable (Result<T, NodeError>) -> Void
    ) {
        let once = Mutex(Optional(reply))
        let resume: @Sendable (Result<T, NodeError>) -> Void = { value in once.withLock { $0.take() }?(value) }
        DispatchQueue.global().asyncAfter(deadline: .now() + options.requestTimeout.inSeconds) {
            resume(.failure(.outcomeUnknown))
        }
        let serve = Applier<Machine>.Job.perform({ machine in resume(.success(body(machine))) }, refused: { resume(.failure(.stopped)) })
        enqueue(.read(ReadJob(serve: serve, fail: { resume(.failure($0)) }), linearizable: true))
    }

    /// Counts a request in flight (for the batching window) until `reply` runs.
    private func counted<T>(_ reply: @escaping @Sendable (T) -> Void) -> @Sendable (T) -> Void {
        let shared = self.shared
        shared.inFlight.add(1, ordering: .relaxed)
        return { result in
            shared.inFlight.subtract(1, ordering: .relaxed)
            reply(result)
        }
    }

    /// Starts an election now (tests, and `ensemble dev` to speed up the first one).
    public func campaign() { enqueue(.campaign) }

    public func transferLeadership(to target: NodeID) { enqueue(.transfer(target)) }

    /// Runs `body` on the apply thread, between batches, with the state
    /// machine: for work that must be ordered with apply (creating a watch at
    /// the current revision, renewing a lease on the leader). It must be quick.
    /// Not run if the member has stopped taking work.
    public func perform(_ body: @escaping @Sendable (Machine) -> Void) { applier.post(.perform(body, refused: nil)) }

    /// ``perform(_:)``; `refused` runs instead if the member stops first.
    public func perform(_ body: @escaping @Sendable (Machine) -> Void, refused: @escaping @Sendable () -> Void) {
        applier.post(.perform(body, refused: refused))
    }

    /// ``perform(_:)`` with a result; nil if the member stopped first.
    public func withMachine<T: Sendable>(_ body: @escaping @Sendable (Machine) -> T) async -> T? {
        await withMachine(body, as: Applier<Machine>.Job.perform)
    }

    /// Posts `body` as the job `kind` makes of it and of its refusal; awaits its result.
    private func withMachine<T: Sendable>(
        _ body: @escaping @Sendable (Machine) -> T,
        as kind: (@escaping @Sendable (Machine) -> Void, (@Sendable () -> Void)?) -> Applier<Machine>.Job
    ) async -> T? {
        await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            let once = Mutex(Optional(continuation))
            let resume: @Sendable (T?) -> Void = { value in once.withLock { $0.take() }?.resume(returning: value) }
            applier.post(kind({ machine in resume(body(machine)) }, { resume(nil) }))
        }
    }

    /// ``withMachine(_:)`` for what the leader's next tick must see even
    /// when it comes overdue while earlier work is still queued: it then runs
    /// first (``Applier/Job/beforeTick(_:refused:)``).
    public func withMachineBeforeTick<T: Sendable>(_ body: @escaping @Sendable (Machine) -> T) async -> T? {
        await withMachine(body, as: Applier<Machine>.Job.beforeTick)
    }

    /// ``withMachineBeforeTick(_:)`` with a callback, run once on the apply
    /// thread (nil if the member stopped first); it must be quick.
    public func withMachineBeforeTick<T: Sendable>(_ body: @escaping @Sendable (Machine) -> T, reply: @escaping @Sendable (T?) -> Void) {
        applier.post(.beforeTick({ machine in reply(body(machine)) }, refused: { reply(nil) }))
    }

    private func enqueue(_ work: Work) {
        if !shared.enqueue(work) { fail(work, .stopped) }
    }

    private func fail(_ work: Work, _ error: NodeError) {
        switch work {
        case let .propose(_, reply), let .checkConfChange(_, reply, _),
            let .checkedConfChange(_, _, _, reply, _):
            reply(.failure(error))
        case let .read(job, _): job.fail(error)
        default: break
        }
    }
}

// MARK: - The loop

extension NodeLoop {
    private func run() {
        shared.published.withLock { $0.running = true }
        let clock = ContinuousClock()
        var nextTick = clock.now + options.tickInterval
        var lastCycle = clock.now
        while true {
            if shared.inFlight.load(ordering: .relaxed) >= options.batchingMinimumInFlight {
                let wait = clock.now.duration(to: lastCycle + options.batchingWindow)
                if wait > .zero { Thread.sleep(forTimeInterval: wait.inSeconds) }
            }
            let wait = clock.now.duration(to: nextTick)
            if wait > .zero { _ = shared.wakeup.wait(timeout: .now() + wait.inSeconds) }
            let (work, stopping) = shared.inbox.withLock { inbox in
                defer { inbox.removeAll(keepingCapacity: true) }
                return (inbox.work, inbox.stopping)
            }
            // Wake-ups for work already taken find an empty inbox: only a
            // cycle with work counts for the batching window.
            if !work.isEmpty { lastCycle = clock.now }
            if stopping {
                shutDown(leftover: work, pending: .outcomeUnknown)
                return
            }
            // With lease reads, time comes first: ticks missed during a slow
            // cycle are caught up before any request is served, so a stalled
            // leader learns it may have lost its lease before it answers
            // anything. Otherwise peer messages come first: a member starved of
            // CPU must not count the heartbeats and acknowledgements waiting in
            // its inbox as missing (it would step down or call an election
            // that nothing justifies); ReadIndex needs no lease. For the same
            // reason a backlog of missed ticks is never replayed (etcd's ticker
            // drops them too): an empty inbox after a stall is no proof of
            // silence when the transport's threads were starved as well, and
            // replaying a stall longer than an election timeout would make a
            // healthy leader step down and its followers drop it.
            var missed = 0
            // (At least an election timeout of them: a stall that long must
            // end the lease, however many ticks the timeout is.)
            if leaseReads { missed = catchUpTicks(clock: clock, nextTick: &nextTick, limit: max(64, Int(contactBreak) + 1)) }
            askedOfLeader = ([], [])
            for item in work { handle(item) }
            releaseHeld()
            releaseAfterHandover()
            redispatchUnsent()
            forwardProposals()
            cycleRead = nil
            if !leaseReads {
                missed = catchUpTicks(clock: clock, nextTick: &nextTick, limit: 1)
            }
            do {
                if applyFailed { throw NodeError.stopped }
                try processReadies()
            } catch {
                // The log could not be written: this member must not go on (it
                // could acknowledge what is not durable). Whatever was proposed may
                // still commit through the others.
                transport.unregister(id)
                let leftover = shared.inbox.withLock { inbox in
                    inbox.stopping = true
                    defer { inbox.removeAll() }
                    return inbox.work
                }
                shutDown(leftover: leftover, pending: .outcomeUnknown)
                return
            }
            // Deadlines are seconds long: checking once per tick is enough, and
            // keeps a scan of every waiting request off the per-cycle path.
            if missed > 0 {
                expireRequests(now: clock.now)
                reportSnapshotReadFailure()
            }
        }
    }

    /// Runs the ticks that are due, at most `limit`; returns how many. The rest
    /// of a backlog is dropped (the next tick is scheduled from now).
    private func catchUpTicks(clock: ContinuousClock, nextTick: inout ContinuousClock.Instant, limit: Int) -> Int {
        var missed = 0
        while clock.now >= nextTick && missed < limit {
            raft.tick()
            ticks += 1
            nextTick = nextTick + options.tickInterval
            missed += 1
        }
        if clock.now > nextTick { nextTick = clock.now + options.tickInterval }
        // The machine's own leader-side proposals (lease expiries) come back
        // as `.machineProposals`.
        if missed > 0 && raft.role == .leader { applier.post(.leaderTick) }
        return missed
    }

    /// Answers everything still waiting, once, and marks the member stopped.
    private func shutDown(leftover: [Work], pending error: NodeError) {
        for item in leftover { fail(item, .stopped) }
        for (_, pending) in proposals { pending.reply(.failure(error)) }
        proposals.removeAll()
        for item in toForward { item.reply(.failure(.stopped)) }
        toForward.removeAll()
        for item in unsent { item.reply(.failure(.stopped)) }
        unsent.removeAll()
        for item in awaitingHandover { item.reply(.failure(.stopped)) }
        awaitingHandover.removeAll()
        for item in held { fail(item.work, .stopped) }
        held.removeAll()
        failForwarded(error)
        failReads(.stopped)
        shared.published.withLock { $0.running = false }
    }

    /// A snapshot that cannot be read back fails silently inside Raft (it
    /// just cannot send it): say so, once per reason.
    private func reportSnapshotReadFailure() {
        guard let reason = storage.snapshotReadFailure, reason != reportedSnapshotFailure else { return }
        reportedSnapshotFailure = reason
        options.observer?.snapshotUnreadable(reason)
    }

    /// Requests past their deadline fail instead of waiting forever (a read whose
    /// forward was lost, a proposal on a deposed leader past the new log's end).
    private func expireRequests(now: ContinuousClock.Instant) {
        if held.contains(where: { $0.deadline <= now }) {
            // Never proposed: certainly did not happen.
            for item in held where item.deadline <= now { fail(item.work, .noLeader) }
            held.removeAll { $0.deadline <= now }
        }
        for (index, pending) in proposals where pending.deadline <= now {
            proposals.removeValue(forKey: index)
            pending.reply(.failure(.outcomeUnknown))
            options.observer?.proposalFailed()
        }
        for (context, batch) in forwarded where batch.deadline <= now {
            forwarded.removeValue(forKey: context)
            for reply in batch.replies { reply(.failure(.outcomeUnknown)) }
        }
        if awaitingHandover.contains(where: { $0.deadline <= now }) {
            // Refused each time it was offered: certainly did not happen.
            let error: NodeError = raft.leader == id || raft.leader == .none ? .noLeader : .notLeader(leader: raft.leader)
            for item in awaitingHandover where item.deadline <= now { item.reply(.failure(error)) }
            awaitingHandover.removeAll { $0.deadline <= now }
        }
        for (context, pending) in reads where pending.deadline <= now {
            reads.removeValue(forKey: context)
            for job in pending.jobs { job.fail(.leaderChanged) }
        }
    }

    /// Whether the applier is so far behind the commit index that new
    /// proposals are refused (they would only queue up behind it).
    /// The entries committed before this start are replayed first and do
    /// not count: a restart is not a reason to refuse writes.
    private var applyLagging: Bool {
        raft.commitIndex > max(applier.appliedIndex.load(ordering: .relaxed), startCommit) + options.maxApplyLag
    }

    /// Makes a proposal and waits for the entry at its index, or answers the
    /// refusal. `deadline`: one the request already has (it was forwarded
    /// before and dropped unsent), else the request timeout from now.
    private func track(
        _ reply: @escaping ProposalReply, deadline: ContinuousClock.Instant? = nil,
        _ propose: () throws(ProposalError) -> (index: UInt64, term: UInt64)
    ) {
        do {
            let (index, term) = try propose()
            // A proposal still waiting at this index lost its slot here to a
            // newer term's entry; another member may still hold and commit
            // its entry, so its outcome is unknown.
            proposals.removeValue(forKey: index)?.reply(.failure(.outcomeUnknown))
            proposals[index] = (term, reply, deadline ?? ContinuousClock.now + options.requestTimeout)
        } catch let .notLeader(leader) {
            reply(.failure(leader == .none ? .noLeader : .notLeader(leader: leader)))
        } catch {
            reply(.failure(.proposalDropped("\(error)")))
        }
    }

    /// Proposes on this leader, queues for forwarding to the leader, or
    /// answers the refusal.
    private func dispatch(_ data: [UInt8], _ reply: @escaping ProposalReply) {
        let forward = options.forwardProposals && raft.role == .follower && raft.leader != .none && raft.leader != id
        if forward || raft.role == .leader, applyLagging {
            reply(.failure(.tooManyRequests))
            return
        }
        if forward {
            toForward.append((data, reply, nil))
        } else if raft.role == .leader {
            proposeHere(data, reply, deadline: nil)
        } else {
            track(reply) { () throws(ProposalError) in try raft.propose(data) }
        }
    }

    /// Runs `check` on the machine once it has applied everything handed out
    /// so far (the applier's queue is in order), and comes back with its decision.
    private func checkConfChange(_ check: @escaping ConfChangeCheck, _ reply: @escaping ProposalReply, attempt: Int) {
        guard raft.role == .leader else {
            reply(.failure(raft.leader == .none ? .noLeader : .notLeader(leader: raft.leader)))
            return
        }
        let checkedAt = raft.appliedIndex
        var status = currentStatus()
        let members = Set(raft.confState.voters + raft.confState.learners)
        contact = contact.filter { members.contains($0.key) }
        for (peer, heard) in contact where ticks - heard.last <= contactBreak && peer != id {
            status.connectedPeers.insert(peer)
            if ticks - heard.since >= healthTicks { status.healthyPeers.insert(peer) }
        }
        // The transport's link pings cover the time before this leader's
        // election, when its followers had no reason to talk to it.
        let now = ContinuousClock.now
        for (peer, since) in transport.linkedPeers(of: id) where members.contains(peer) && peer != id {
            status.connectedPeers.insert(peer)
            if now - since >= NodeStatus.healthInterval { status.healthyPeers.insert(peer) }
        }
        let shared = self.shared
        let leader = status
        applier.post(
            .perform(
                { machine in
                    let decision = check(machine, leader)
                    if !shared.enqueue(.checkedConfChange(decision, checkedAt: checkedAt, check, reply, attempt: attempt)) {
                        reply(.failure(.stopped))
                    }
                }, refused: { reply(.failure(.stopped)) }))
    }

    /// Holds `work` while no leader is known (true); otherwise lets what
    /// was held go first, so requests keep their order (false).
    private func holdForLeader(_ work: Work) -> Bool {
        if raft.role != .leader && raft.leader == .none {
            held.append((work, ContinuousClock.now + noLeaderWait))
            return true
        }
        releaseHeld()
        return false
    }

    /// Requests held for want of a leader go on once one is known.
    private func releaseHeld() {
        guard !held.isEmpty, raft.role == .leader || raft.leader != .none else { return }
        let waiting = held
        held.removeAll()
        for item in waiting { handle(item.work) }
    }

    /// Proposals refused during a hand-over go again once the leader or term
    /// changed, this member's own hand-over ended, or an election timeout
    /// passed (``awaitingHandover``), through ``redispatchUnsent()``.
    private func releaseAfterHandover() {
        guard !awaitingHandover.isEmpty else { return }
        let ownHandoverOver = raft.role == .leader && raft.transferee == .none
        awaitingHandover.removeAll { item in
            guard raft.leader != item.leader || raft.term != item.term || ticks - item.since >= contactBreak
                || (item.leader == id && ownHandoverOver)
            else { return false }
            unsent.append((item.data, item.reply, item.deadline))
            return true
        }
    }

    /// Proposes on this leader, or, while it hands leadership over (Raft
    /// refuses proposals then), keeps the proposal for the next leader.
    private func proposeHere(_ data: [UInt8], _ reply: @escaping ProposalReply, deadline: ContinuousClock.Instant?) {
        guard raft.transferee == .none else {
            awaitingHandover.append((data, reply, deadline ?? ContinuousClock.now + options.requestTimeout, id, raft.term, ticks))
            return
        }
        track(reply, deadline: deadline) { () throws(ProposalError) in try raft.propose(data) }
    }

    /// Proposals the transport dropped unsent go again: proposed here if this
    /// member now leads, forwarded if it knows a leader, else kept for the
    /// next cycle — each until its first deadline, then "no leader" (none of
    /// its attempts was sent, so it certainly did not happen). A link that
    /// stays down one way (heartbeats still arrive) cannot keep one forever.
    private func redispatchUnsent() {
        guard !unsent.isEmpty else { return }
        let now = ContinuousClock.now
        let items = unsent
        unsent.removeAll()
        for item in items {
            if item.deadline <= now {
                item.reply(.failure(.noLeader))
            } else if raft.role == .leader {
                proposeHere(item.data, item.reply, deadline: item.deadline)
            } else if raft.role == .follower && raft.leader != .none && raft.leader != id {
                // A leader's own proposals kept through its hand-over reach
                // here too: without forwarding (a rolling upgrade's older
                // successor would close the link on it) the refusal goes to
                // the caller, which forwards the request itself.
                guard options.forwardProposals else {
                    item.reply(.failure(.notLeader(leader: raft.leader)))
                    continue
                }
                toForward.append(item)
            } else {
                unsent.append(item)
            }
        }
    }

    /// Sends this cycle's proposals to the leader as one batch (Raft
    /// `.propose`); a batch the leader refuses waits out its hand-over
    /// (``awaitingHandover``).
    private func forwardProposals() {
        guard !toForward.isEmpty else { return }
        let batch = toForward
        toForward.removeAll(keepingCapacity: true)
        if raft.role == .leader {
            // This member won an election in this very cycle.
            for item in batch { proposeHere(item.data, item.reply, deadline: item.deadline) }
            return
        }
        // Proposals sent before (and dropped unsent) go in a batch of their
        // own: it keeps their first deadline, which must not cut short the
        // fresh ones' request timeout.
        // (The common cycle has none: one batch, no copies.)
        guard batch.contains(where: { $0.deadline != nil }) else { return forward(batch) }
        let fresh = batch.filter { $0.deadline == nil }
        let again = batch.filter { $0.deadline != nil }
        for part in [fresh, again] where !part.isEmpty { forward(part) }
    }

    private func forward(_ batch: [(data: [UInt8], reply: ProposalReply, deadline: ContinuousClock.Instant?)]) {
        let context = nextReadContext
        nextReadContext += 1
        do {
            try raft.forward(batch.map(\.data), context: Self.encode(context))
            forwarded[context] = ForwardedBatch(
                replies: batch.map(\.reply), data: batch.map(\.data),
                deadline: batch.lazy.compactMap(\.deadline).min() ?? ContinuousClock.now + options.requestTimeout,
                leader: raft.leader, term: raft.term)
            askedOfLeader.forwarded.append(context)
        } catch let .notLeader(leader) where leader == .none {
            // The leader was lost in this very cycle (a higher term's vote
            // request): wait for the next, as a proposal made now would.
            let deadline = ContinuousClock.now + noLeaderWait
            for item in batch {
                if let first = item.deadline {
                    unsent.append((item.data, item.reply, first))
                } else {
                    held.append((.propose(item.data, item.reply), deadline))
                }
            }
        } catch let .notLeader(leader) {
            for item in batch { item.reply(.failure(.notLeader(leader: leader))) }
        } catch {
            for item in batch { item.reply(.failure(.proposalDropped("\(error)"))) }
        }
    }

    /// The leader answered a forwarded batch: track each proposal by the index
    /// it got, exactly like one made here; a refusal means none happened.
    /// `applied`: what this member has applied, or a snapshot of this Ready covers.
    private func forwardedAnswered(_ answer: ForwardedProposals, applied: UInt64) {
        guard let context = Self.decode(answer.context), let batch = forwarded.removeValue(forKey: context) else { return }
        guard let first = answer.index else {
            if answer.handingOver {
                // Refused by a leader handing over: none happened, and its
                // successor will take them.
                for (data, reply) in zip(batch.data, batch.replies) {
                    awaitingHandover.append((data, reply, batch.deadline, batch.leader, batch.term, ticks))
                }
            } else {
                // Refused for good by this member (removed, no longer
                // leading): the caller may forward the request itself.
                let leader = raft.leader
                let error: NodeError =
                    answer.outcomeUnknown ? .outcomeUnknown : leader == .none || leader == id ? .noLeader : .notLeader(leader: leader)
                for reply in batch.replies { reply(.failure(error)) }
            }
            return
        }
        for (offset, reply) in batch.replies.enumerated() {
            let index = first + UInt64(offset)
            if index <= applied {
                // Applied before the answer came: it cannot be matched any more.
                reply(.failure(.outcomeUnknown))
                continue
            }
            proposals.removeValue(forKey: index)?.reply(.failure(.outcomeUnknown))
            proposals[index] = (answer.term, reply, batch.deadline)
        }
    }

    static func encode(_ context: UInt64) -> [UInt8] { withUnsafeBytes(of: context.littleEndian) { Array($0) } }

    static func decode(_ bytes: [UInt8]) -> UInt64? {
        guard bytes.count == 8 else { return nil }
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        return value
    }

    private func handle(_ work: Work) {
        switch work {
        case let .messages(messages, received):
            for message in messages {
                // Timed from send to arrival: this loop's own cycle (its WAL
                // sync) is not the network's.
                if message.kind == .heartbeatResponse, let sent = heartbeatSent[message.from], sent.round == message.context {
                    heartbeatSent[message.from] = nil
                    options.observer?.peerRoundTrip(to: message.from, duration: received - sent.at)
                }
                raft.step(message)
                if let heard = contact[message.from], ticks - heard.last <= contactBreak {
                    if heard.last != ticks { contact[message.from]?.last = ticks }
                } else {
                    contact[message.from] = (ticks, ticks)
                }
            }
        case let .propose(data, reply):
            guard !data.isEmpty else {
                reply(.failure(.proposalDropped("empty proposal")))
                return
            }
            guard !holdForLeader(work) else { return }
            dispatch(data, reply)
        case let .checkConfChange(check, reply, attempt):
            checkConfChange(check, reply, attempt: attempt)
        case let .checkedConfChange(decision, checkedAt, check, reply, attempt):
            switch decision {
            case let .refuse(result):
                reply(.success(result))
            case let .propose(change):
                // A change entered the log after the state checked: check
                // again once it has applied (Raft refuses until then anyway).
                // So for a member update (a new peer URL that an add must not reuse).
                // Also entries appended in this very cycle, which the loop
                // counts only when it hands them out (review finding: a
                // member update just before an add could give two members
                // one peer URL).
                var pending = raft.pendingConfChangeIndex
                if raft.term(at: lastMembershipEntry.index) == lastMembershipEntry.term {
                    pending = max(pending, lastMembershipEntry.index)
                }
                for entry in raft.unpersistedEntries where entry.kind == .normal && Machine.affectsMembershipChecks(entry.data) {
                    pending = max(pending, entry.index)
                }
                guard pending <= checkedAt else {
                    if attempt < 3 && pending <= raft.appliedIndex {
                        checkConfChange(check, reply, attempt: attempt + 1)
                    } else {
                        reply(.failure(.proposalDropped("\(ProposalError.confChangeInProgress)")))
                    }
                    return
                }
                track(reply) { () throws(ProposalError) in try raft.proposeConfChange(change) }
            }
        case let .read(job, linearizable):
            guard linearizable else {
                applier.post(job.serve)
                return
            }
            guard !holdForLeader(work) else { return }
            let under: Leadership = (raft.leader, raft.role, raft.term)
            // (Safe to share: no write past the round's index can have been
            // acknowledged yet — acknowledgements follow this cycle's Ready.)
            if let context = cycleRead, let pending = reads[context], pending.under == under {
                reads[context]?.jobs.append(job)
                return
            }
            let context = nextReadContext
            nextReadContext += 1
            do {
                try raft.readIndex(context: Self.encode(context))
                reads[context] = ([job], ContinuousClock.now + options.requestTimeout, under)
                cycleRead = context
                if raft.role != .leader { askedOfLeader.reads.append(context) }
            } catch {
                job.fail(.noLeader)
            }
        case .campaign:
            raft.campaign()
        case let .transfer(target):
            try? raft.transferLeadership(to: target)
        case let .machineProposals(entries):
            guard raft.role == .leader else { return }
            for data in entries { _ = try? raft.propose(data) }
        case let .snapshotWritten(metadata, result, started):
            let bytes: Int
            switch result {
            case let .success(written): bytes = written
            case let .failure(error):
                applier.post(.snapshotSettled(metadata.index, bytes: nil))
                options.observer?.snapshotFailed(index: metadata.index, error: "\(error)")
                return
            }
            // Storage keeps only the metadata; the data is in the file.
            let installed = installSnapshot(Snapshot(metadata: metadata, data: []))
            applier.post(.snapshotSettled(metadata.index, bytes: installed ? bytes : nil))
            if installed {
                options.observer?.snapshotSaved(index: metadata.index, bytes: bytes, duration: .now - started)
            }
            publishStatus()
        case .applyFailed:
            applyFailed = true
        }
    }

    /// Starts timing a heartbeat to each peer that has none timed; the
    /// answer names the same round. One unanswered for a second is given up
    /// (lost).
    /// Also reports a heartbeat sent later than two intervals after the
    /// previous one to that peer: the leader is overloaded or its disk slow,
    /// and followers may soon call an election (etcd counts these in
    /// `etcd_server_heartbeat_send_failures_total`).
    private func timeHeartbeats(_ messages: [Message]) {
        let now = ContinuousClock.now
        for message in messages where message.kind == .heartbeat {
            if let last = lastHeartbeat.updateValue(now, forKey: message.to), now - last > heartbeatDeadline {
                options.observer?.heartbeatLate(to: message.to, by: now - last - heartbeatDeadline, deadline: heartbeatDeadline)
            }
            if let sent = heartbeatSent[message.to], now - sent.at < .seconds(1) { continue }
            heartbeatSent[message.to] = (message.context, now)
        }
    }

    /// Does what each Ready asks, in the order its contract gives.
    private func processReadies() throws {
        while raft.hasReady {
            let ready = raft.ready()
            let leadership = (raft.leader, raft.role, raft.term)
            if (lastLeadership?.leader ?? .none) != raft.leader { options.observer?.leaderChanged(to: raft.leader) }
            if let last = lastLeadership, last != leadership {
                // Reads waiting on a round die with any change of leader, role or
                // term (Raft drops them); the client retries. Those asked
                // since, in this cycle, wait on.
                failReads(.leaderChanged, exceptUnder: leadership)
                // A batch sent to another leader or in another term may or may
                // not have been appended; one sent to the leader now known waits on.
                failForwarded(.outcomeUnknown, unlessSentTo: raft.leader, term: raft.term)
            }
            if (lastLeadership?.role == .leader) != (raft.role == .leader) {
                applier.post(.roleChanged(isLeader: raft.role == .leader, term: raft.term))
                lastHeartbeat = [:]
            }
            lastLeadership = leadership
            transport.send(ready.messages)
            reportSnapshots(ready.messages)
            if options.observer != nil { timeHeartbeats(ready.messages) }
            for entry in ready.entries where entry.kind == .normal && Machine.affectsMembershipChecks(entry.data) {
                lastMembershipEntry = (entry.index, entry.term)
            }
            if ready.needsPersist {
                let started = ContinuousClock.now
                try storage.append(hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot)
                if let observer = options.observer {
                    let written = storage.statistics.bytesWritten
                    observer.walWritten(bytes: written - walBytesReported)
                    walBytesReported = written
                }
                if ready.mustSync {
                    try storage.sync()
                    options.observer?.walSynced(duration: ContinuousClock.now - started)
                } else {
                    // Only the commit index moved: no fdatasync (it would double
                    // a lone writer's latency), but handed to the kernel so that
                    // a killed process restarts with it.
                    try storage.flush()
                }
            }
            // (A follower sends everything here, its requests to the leader included.)
            let dropped = transport.send(ready.messagesAfterPersist)
            reportSnapshots(ready.messagesAfterPersist)
            failUnsent(dropped: dropped)
            if let snapshot = ready.snapshot {
                applier.post(.restore(snapshot))
                // Entries the snapshot covered were never applied here one by one:
                // whether a pending proposal is among them cannot be told.
                for index in proposals.keys where index <= snapshot.metadata.index {
                    proposals.removeValue(forKey: index)?.reply(.failure(.outcomeUnknown))
                }
                lastSnapshotIndex = max(lastSnapshotIndex, snapshot.metadata.index)
            }
            // Before this Ready's entries are handed out: an answer may name one of them.
            let handedOut = max(raft.appliedIndex, ready.snapshot?.metadata.index ?? 0)
            for answer in ready.forwarded { forwardedAnswered(answer, applied: handedOut) }
            if !ready.committedEntries.isEmpty {
                // The replies waiting on these entries go with them: from here
                // on they are the applier's to answer.
                var waiters: [Applier<Machine>.Waiter] = []
                if !proposals.isEmpty {
                    for entry in ready.committedEntries {
                        if let pending = proposals.removeValue(forKey: entry.index) {
                            waiters.append(.init(index: entry.index, term: pending.term, reply: pending.reply))
                        }
                    }
                }
                applier.post(.entries(ready.committedEntries, conf: raft.confState, waiters: waiters))
            }
            for state in ready.readStates {
                guard let context = Self.decode(state.context) else { continue }
                confirmedReads.append((state.index, context))
            }
            raft.advance(ready)
            serveConfirmedReads()
        }
        publishStatus()
    }

    /// Raft needs to hear how a snapshot send ended. It is reported sent; if the
    /// transport lost it, the follower's next answer shows it still lags and
    /// Raft probes and sends a snapshot again.
    private func reportSnapshots(_ messages: [Message]) {
        for message in messages where message.kind == .snapshot {
            raft.reportSnapshot(to: message.to, succeeded: true)
        }
    }

    /// Confirmed reads whose index has been handed to the applier go to it:
    /// it serves them after applying that far.
    private func serveConfirmedReads() {
        guard !confirmedReads.isEmpty else { return }
        let applied = raft.appliedIndex
        var waiting: [(index: UInt64, context: UInt64)] = []
        for read in confirmedReads {
            if read.index <= applied, let pending = reads.removeValue(forKey: read.context) {
                for job in pending.jobs { applier.post(job.serve) }
            } else if read.index > applied, reads[read.context] != nil {
                // (A read that expired meanwhile is not kept: a member that
                // stays behind would otherwise pile up one entry per read.)
                waiting.append(read)
            }
        }
        confirmedReads = waiting
    }

    /// Records a snapshot the applier wrote and compacts the log behind it;
    /// false if it was not recorded (a newer one from the leader replaced it
    /// meanwhile, or the WAL marker could not be written: the next threshold
    /// tries again, and the log still has everything).
    private func installSnapshot(_ snapshot: Snapshot) -> Bool {
        let index = snapshot.metadata.index
        guard (try? storage.installSnapshotFile(snapshot)) == true else { return false }
        lastSnapshotIndex = max(lastSnapshotIndex, index)
        // A failed compaction only leaves more log on disk (a failed segment
        // removal stops purging until a restart; appends go on).
        if index > options.snapshotKeep { _ = try? storage.compact(upTo: index - options.snapshotKeep) }
        return true
    }

    /// This cycle's requests to the leader that the transport dropped unsent
    /// (no connection to it yet, or its buffer full) certainly did not reach
    /// it, and Raft does not resend them. Forwarded proposals are held and
    /// forwarded again from the next cycle on — to the same leader once the
    /// link is back, or to the next one — until their deadline (then "no
    /// leader": none was ever sent); reads fail as a change of leader, which
    /// clients retry. Before, both waited out the 7 s request timeout and
    /// then answered "outcome unknown".
    private func failUnsent(dropped: Set<NodeID>) {
        defer { askedOfLeader = ([], []) }
        guard !dropped.isEmpty else { return }
        for context in askedOfLeader.forwarded {
            guard let batch = forwarded[context], dropped.contains(batch.leader) else { continue }
            forwarded.removeValue(forKey: context)
            for (data, reply) in zip(batch.data, batch.replies) { unsent.append((data, reply, batch.deadline)) }
        }
        for context in askedOfLeader.reads {
            guard let pending = reads[context], dropped.contains(pending.under.leader) else { continue }
            reads.removeValue(forKey: context)
            for job in pending.jobs { job.fail(.leaderChanged) }
        }
        confirmedReads.removeAll { reads[$0.context] == nil }
    }

    private func failForwarded(_ error: NodeError, unlessSentTo leader: NodeID = .none, term: UInt64 = 0) {
        for (context, batch) in forwarded where leader == .none || batch.leader != leader || batch.term != term {
            forwarded.removeValue(forKey: context)
            for reply in batch.replies { reply(.failure(error)) }
        }
    }

    private func failReads(_ error: NodeError, exceptUnder current: Leadership? = nil) {
        for (context, pending) in reads where current.map({ pending.under != $0 }) ?? true {
            reads.removeValue(forKey: context)
            for job in pending.jobs { job.fail(error) }
        }
        confirmedReads.removeAll { reads[$0.context] == nil }
    }

    /// The node's state as of now (loop thread).
    private func currentStatus() -> NodeStatus {
        NodeStatus(
            id: id, role: raft.role, leader: raft.leader, term: raft.term, commitIndex: raft.commitIndex,
            appliedIndex: 0, voters: raft.confState.voters, learners: raft.confState.learners,
            running: true, matchIndexes: raft.matchIndexes, activePeers: raft.activePeers, pendingProposals: proposals.count,
            snapshotIndex: lastSnapshotIndex)
    }

    /// The configuration once the committed membership changes after
    /// `index` apply (as Raft applies them: one that does not fit is ignored).
    static func committedConfState(_ start: ConfState, in storage: DiskStorage, after index: UInt64) -> ConfState {
        // (A commit index past the log's end — a torn tail cut at restart —
        // counts what is there.)
        let commit = min(storage.hardState.commit, storage.lastIndex)
        guard commit > index, let entries = try? storage.entries((index + 1)..<(commit + 1), maxBytes: .max) else { return start }
        var state = start
        for entry in entries where entry.kind == .confChange {
            if let change = ConfChange(decoding: entry.data), let next = try? state.applying(change) { state = next }
        }
        return state
    }

    private func publishStatus() {
        var status = currentStatus()
        let learner = raft.confState.learners.contains(id)
        if shared.learner.load(ordering: .relaxed) != learner { shared.learner.store(learner, ordering: .relaxed) }
        let knowsLeader = raft.leader != .none
        if shared.knowsLeader.load(ordering: .relaxed) != knowsLeader { shared.knowsLeader.store(knowsLeader, ordering: .relaxed) }
        shared.published.withLock { published in
            // The applier raises the applied index on its own; never lower it.
            status.appliedIndex = max(published.appliedIndex, applier.appliedIndex.load(ordering: .relaxed))
            published = status
        }
    }
}
