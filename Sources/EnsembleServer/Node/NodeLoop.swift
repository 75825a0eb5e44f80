import Dispatch
import Foundation
import Raft
import RaftTransport
import RaftStorage
import Synchronization

/// Runs one member: the single serial loop that owns a ``RaftNode``, its
/// durable log and the replicated state machine. Everything that reaches the
/// member — client proposals and reads, peer messages, ticks — goes through one
/// inbox and is handled in batches: many proposals become one Ready, one WAL
/// write with one fdatasync, one transport call. Clients wait on continuations
/// that the apply step resumes; there is no actor hop per request.
///
/// Thread safety: the inbox and the published status are locked; everything else
/// belongs to the loop thread (hence `@unchecked Sendable`).
public final class NodeLoop<Machine: ReplicatedStateMachine>: @unchecked Sendable {
    public struct Options: Sendable {
        public var tickInterval: Duration = .milliseconds(100)
        /// Take a snapshot after this many applied entries.
        public var snapshotEvery: UInt64 = 10_000
        /// Entries kept behind a snapshot for slow followers.
        public var snapshotKeep: UInt64 = 5_000
        /// A proposal or read not answered by then fails: a proposal with
        /// ``NodeError/outcomeUnknown`` (it may still commit), a read with
        /// ``NodeError/leaderChanged`` (retry). etcd waits 5 s plus the election timeout.
        public var requestTimeout: Duration = .seconds(7)
        /// A follower forwards proposals to its leader over the Raft transport
        /// (one message per cycle) instead of refusing them with ``NodeError/notLeader(leader:)``.
        public var forwardProposals = true
        /// Hears syncs, applies and leader changes (metrics).
        public var observer: (any NodeObserver)?
        public init() {}
    }

    typealias ProposalReply = @Sendable (Result<Machine.Result, NodeError>) -> Void
    typealias ReadReply = @Sendable (Result<Machine.ReadResult, NodeError>) -> Void

    enum Work {
        case messages([Message])
        case propose([UInt8], ProposalReply)
        case proposeConfChange(ConfChange, ProposalReply)
        case read(Machine.Query, linearizable: Bool, ReadReply)
        case campaign
        case transfer(NodeID)
        case perform(@Sendable (Machine) -> Void)
        /// A snapshot's file was written in the background (or failed).
        case snapshotWritten(Result<Snapshot, WALError>)
    }

    struct Inbox {
        var work: [Work] = []
        var stopping = false
    }

    public let id: NodeID
    private let options: Options
    private let transport: any PeerTransport
    private let inbox = Mutex(Inbox())
    private let wakeup = DispatchSemaphore(value: 0)
    private let published: Mutex<NodeStatus>
    private let finished = DispatchSemaphore(value: 0)

    // Loop-thread state.
    private var raft: RaftNode<DiskStorage>
    private let storage: DiskStorage
    private let machine: Machine
    private var proposals: [UInt64: (term: UInt64, reply: ProposalReply, deadline: ContinuousClock.Instant)] = [:]
    private var reads: [UInt64: (query: Machine.Query, reply: ReadReply, deadline: ContinuousClock.Instant)] = [:]
    private var confirmedReads: [(index: UInt64, context: UInt64)] = []
    /// Proposals made on this follower in the current cycle, forwarded to the
    /// leader as one batch at its end.
    private var toForward: [(data: [UInt8], reply: ProposalReply)] = []
    /// Forwarded batches waiting for the leader's answer, by context.
    private var forwarded: [UInt64: ForwardedBatch] = [:]

    struct ForwardedBatch {
        var replies: [ProposalReply]
        var deadline: ContinuousClock.Instant
        /// Whom it went to, in which term: only a change from that fails it early.
        var leader: NodeID
        var term: UInt64
    }
    /// Read contexts start at a random value each start, so a reply meant for
    /// this member's previous incarnation can never answer a new read.
    private var nextReadContext = UInt64.random(in: 1...(UInt64.max / 2))
    /// Leader, role and term at the last Ready: any change fails waiting reads.
    private var lastLeadership: (leader: NodeID, role: Role, term: UInt64)?
    private var lastSnapshotIndex: UInt64
    /// A snapshot is being encoded and written off the loop; one at a time.
    private var snapshotInFlight = false
    private var snapshotStarted = ContinuousClock.now
    private let snapshotQueue: DispatchQueue
    /// Reads served on the leader's lease: time must then be caught up first.
    private let leaseReads: Bool

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
        let snapshot = try storage.snapshot()
        if !snapshot.isEmpty { try machine.restore(snapshot.data) }
        var config = config
        config.applied = snapshot.metadata.index
        self.raft = try RaftNode(config: config, storage: storage)
        self.id = config.id
        self.storage = storage
        self.machine = machine
        self.transport = transport
        self.options = options
        self.published = Mutex(NodeStatus(id: config.id))
        self.lastSnapshotIndex = snapshot.metadata.index
        self.snapshotQueue = DispatchQueue(label: "ensemble-snapshot-\(config.id)")
        self.leaseReads = config.readOnly == .leaseBased
    }

    private let lifecycle = Mutex((started: false, stopped: false))

    /// Starts the loop thread and connects to the transport. Calling it again
    /// does nothing.
    public func start() {
        guard lifecycle.withLock({ state -> Bool in
            defer { state.started = true }
            return !state.started
        }) else { return }
        transport.register(id) { [weak self] messages in self?.enqueue(.messages(messages)) }
        let thread = Thread { [self] in
            self.run()
            // A snapshot still being written finishes first (its file is then
            // harmless: without its WAL marker, recovery removes it).
            self.snapshotQueue.sync {}
            // Release the data directory before anyone may reopen it.
            try? self.storage.close()
            self.finished.signal()
        }
        thread.name = "ensemble-node-\(id)"
        thread.start()
    }

    /// Stops the loop; waiting requests fail with ``NodeError/stopped``. Unsynced
    /// state is never left behind: every cycle syncs before it replies.
    public func stop() {
        let (started, alreadyStopped) = lifecycle.withLock { state in
            defer { state.stopped = true }
            return (state.started, state.stopped)
        }
        inbox.withLock { $0.stopping = true }
        guard started, !alreadyStopped else { return }
        transport.unregister(id)
        wakeup.signal()
        finished.wait()
    }

    public var status: NodeStatus { published.withLock { $0 } }

    /// Proposes `data`; returns what applying it produced once it is committed
    /// and applied here. Only the leader accepts proposals.
    public func propose(_ data: [UInt8]) async throws(NodeError) -> Machine.Result {
        let result: Result<Machine.Result, NodeError> = await withCheckedContinuation { continuation in
            propose(data) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// ``propose(_:)`` for callers that start no task per request (the gRPC
    /// KV handlers): `reply` runs once, on the loop thread, and must be quick.
    public func propose(_ data: [UInt8], reply: @escaping @Sendable (Result<Machine.Result, NodeError>) -> Void) {
        enqueue(.propose(data, reply))
    }

    /// Proposes a membership change; returns what the machine made of it when
    /// applied here (``ReplicatedStateMachine/applyConfChange(_:accepted:index:)``).
    /// Only the leader accepts it, one change at a time.
    public func proposeConfChange(_ change: ConfChange) async throws(NodeError) -> Machine.Result {
        let result: Result<Machine.Result, NodeError> = await withCheckedContinuation { continuation in
            enqueue(.proposeConfChange(change, { continuation.resume(returning: $0) }))
        }
        return try result.get()
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
    /// thread, and must be quick.
    public func read(
        _ query: Machine.Query, linearizable: Bool, reply: @escaping @Sendable (Result<Machine.ReadResult, NodeError>) -> Void
    ) {
        enqueue(.read(query, linearizable: linearizable, reply))
    }

    /// Starts an election now (tests, and `ensemble dev` to speed up the first one).
    public func campaign() { enqueue(.campaign) }

    public func transferLeadership(to target: NodeID) { enqueue(.transfer(target)) }

    /// Runs `body` on the loop thread, between cycles, with the state machine:
    /// for work that must be ordered with apply (creating a watch at the current
    /// revision, renewing a lease on the leader). It must be quick. Not run if
    /// the member has stopped taking work.
    public func perform(_ body: @escaping @Sendable (Machine) -> Void) { enqueue(.perform(body)) }

    /// ``perform(_:)`` with a result; nil if the member stopped first.
    public func withMachine<T: Sendable>(_ body: @escaping @Sendable (Machine) -> T) async -> T? {
        await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            let once = Mutex(Optional(continuation))
            let resume: @Sendable (T?) -> Void = { value in once.withLock { $0.take() }?.resume(returning: value) }
            let accepted = inbox.withLock { inbox -> Bool in
                guard !inbox.stopping else { return false }
                inbox.work.append(.perform({ machine in resume(body(machine)) }))
                return true
            }
            if accepted { wakeup.signal() } else { resume(nil) }
        }
    }

    private func enqueue(_ work: Work) {
        let accepted = inbox.withLock { inbox -> Bool in
            guard !inbox.stopping else { return false }
            inbox.work.append(work)
            return true
        }
        if accepted {
            wakeup.signal()
        } else {
            fail(work, .stopped)
        }
    }

    private func fail(_ work: Work, _ error: NodeError) {
        switch work {
        case let .propose(_, reply), let .proposeConfChange(_, reply): reply(.failure(error))
        case let .read(_, _, reply): reply(.failure(error))
        default: break
        }
    }
}

// MARK: - The loop

extension NodeLoop {
    private func run() {
        published.withLock { $0.running = true }
        let clock = ContinuousClock()
        var nextTick = clock.now + options.tickInterval
        while true {
            let wait = clock.now.duration(to: nextTick)
            if wait > .zero {
                let nanos = wait.components.seconds * 1_000_000_000 + wait.components.attoseconds / 1_000_000_000
                _ = wakeup.wait(timeout: .now() + .nanoseconds(Int(nanos)))
            }
            let (work, stopping) = inbox.withLock { inbox in
                defer { inbox.work.removeAll(keepingCapacity: true) }
                return (inbox.work, inbox.stopping)
            }
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
            // reason, once peers have been heard in this cycle the backlog of
            // missed ticks is not replayed: the time was lost to starvation, not
            // to silence.
            var missed = 0
            if leaseReads { missed = catchUpTicks(clock: clock, nextTick: &nextTick, limit: 64) }
            for item in work { handle(item) }
            forwardProposals()
            if !leaseReads {
                let heardPeers = work.contains { if case .messages = $0 { true } else { false } }
                missed = catchUpTicks(clock: clock, nextTick: &nextTick, limit: heardPeers ? 1 : 64)
            }
            do {
                try processReadies()
            } catch {
                // The log could not be written: this member must not go on (it
                // could acknowledge what is not durable). Whatever was proposed may
                // still commit through the others.
                transport.unregister(id)
                let leftover = inbox.withLock { inbox in
                    inbox.stopping = true
                    defer { inbox.work.removeAll() }
                    return inbox.work
                }
                shutDown(leftover: leftover, pending: .outcomeUnknown)
                return
            }
            // Deadlines are seconds long: checking once per tick is enough, and
            // keeps a scan of every waiting request off the per-cycle path.
            if missed > 0 { expireRequests(now: clock.now) }
        }
    }

    /// Runs the ticks that are due, at most `limit`; returns how many. The rest
    /// of a backlog is dropped (the next tick is scheduled from now).
    private func catchUpTicks(clock: ContinuousClock, nextTick: inout ContinuousClock.Instant, limit: Int) -> Int {
        var missed = 0
        while clock.now >= nextTick && missed < limit {
            raft.tick()
            nextTick = nextTick + options.tickInterval
            missed += 1
        }
        if clock.now > nextTick { nextTick = clock.now + options.tickInterval }
        if missed > 0 && raft.role == .leader {
            // The machine's own leader-side proposals (lease expiries), fire and forget.
            for data in machine.leaderTick() where !data.isEmpty { _ = try? raft.propose(data) }
        }
        return missed
    }

    /// Answers everything still waiting, once, and marks the member stopped.
    private func shutDown(leftover: [Work], pending error: NodeError) {
        for item in leftover {
            // Accepted work that only touches the machine still runs, so its
            // caller hears back (this is still the loop thread).
            if case let .perform(body) = item { body(machine) } else { fail(item, .stopped) }
        }
        for (_, pending) in proposals { pending.reply(.failure(error)) }
        proposals.removeAll()
        for item in toForward { item.reply(.failure(.stopped)) }
        toForward.removeAll()
        failForwarded(error)
        failReads(.stopped)
        published.withLock { $0.running = false }
    }

    /// Requests past their deadline fail instead of waiting forever (a read whose
    /// forward was lost, a proposal on a deposed leader past the new log's end).
    private func expireRequests(now: ContinuousClock.Instant) {
        for (index, pending) in proposals where pending.deadline <= now {
            proposals.removeValue(forKey: index)
            pending.reply(.failure(.outcomeUnknown))
            options.observer?.proposalFailed()
        }
        for (context, batch) in forwarded where batch.deadline <= now {
            forwarded.removeValue(forKey: context)
            for reply in batch.replies { reply(.failure(.outcomeUnknown)) }
        }
        for (context, pending) in reads where pending.deadline <= now {
            reads.removeValue(forKey: context)
            pending.reply(.failure(.leaderChanged))
        }
    }

    /// Makes a proposal and waits for the entry at its index, or answers the refusal.
    private func track(_ reply: @escaping ProposalReply, _ propose: () throws(ProposalError) -> (index: UInt64, term: UInt64)) {
        do {
            let (index, term) = try propose()
            // A proposal still waiting at this index lost its slot here to a
            // newer term's entry; another member may still hold and commit
            // its entry, so its outcome is unknown.
            proposals.removeValue(forKey: index)?.reply(.failure(.outcomeUnknown))
            proposals[index] = (term, reply, ContinuousClock.now + options.requestTimeout)
        } catch let .notLeader(leader) {
            reply(.failure(leader == .none ? .noLeader : .notLeader(leader: leader)))
        } catch {
            reply(.failure(.proposalDropped("\(error)")))
        }
    }

    /// Sends this cycle's proposals to the leader as one batch (Raft
    /// `.propose`); a refusal answers them with ``NodeError/notLeader(leader:)``.
    private func forwardProposals() {
        guard !toForward.isEmpty else { return }
        let batch = toForward
        toForward.removeAll(keepingCapacity: true)
        if raft.role == .leader {
            // This member won an election in this very cycle.
            for item in batch {
                track(item.reply) { () throws(ProposalError) in try raft.propose(item.data) }
            }
            return
        }
        let context = nextReadContext
        nextReadContext += 1
        do {
            try raft.forward(batch.map(\.data), context: Self.encode(context))
            forwarded[context] = ForwardedBatch(
                replies: batch.map(\.reply), deadline: ContinuousClock.now + options.requestTimeout,
                leader: raft.leader, term: raft.term)
        } catch let .notLeader(leader) {
            for item in batch { item.reply(.failure(leader == .none ? .noLeader : .notLeader(leader: leader))) }
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
            let leader = raft.leader
            let error: NodeError =
                answer.outcomeUnknown ? .outcomeUnknown : leader == .none || leader == id ? .noLeader : .notLeader(leader: leader)
            for reply in batch.replies { reply(.failure(error)) }
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
        case let .messages(messages):
            for message in messages { raft.step(message) }
        case let .propose(data, reply):
            guard !data.isEmpty else {
                reply(.failure(.proposalDropped("empty proposal")))
                return
            }
            if options.forwardProposals, raft.role == .follower, raft.leader != .none, raft.leader != id {
                toForward.append((data, reply))
            } else {
                track(reply) { () throws(ProposalError) in try raft.propose(data) }
            }
        case let .proposeConfChange(change, reply):
            track(reply) { () throws(ProposalError) in try raft.proposeConfChange(change) }
        case let .read(query, linearizable, reply):
            guard linearizable else {
                reply(.success(machine.read(query)))
                return
            }
            let context = nextReadContext
            nextReadContext += 1
            do {
                try raft.readIndex(context: Self.encode(context))
                reads[context] = (query, reply, ContinuousClock.now + options.requestTimeout)
            } catch {
                reply(.failure(.noLeader))
            }
        case .campaign:
            raft.campaign()
        case let .transfer(target):
            try? raft.transferLeadership(to: target)
        case let .perform(body):
            body(machine)
        case let .snapshotWritten(result):
            snapshotInFlight = false
            guard case let .success(snapshot) = result else { return }
            installSnapshot(snapshot)
            options.observer?.snapshotSaved(
                index: snapshot.metadata.index, bytes: snapshot.data.count, duration: .now - snapshotStarted)
            publishStatus()
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
                // term (Raft drops them); the client retries.
                failReads(.leaderChanged)
                // A batch sent to another leader or in another term may or may
                // not have been appended; one sent to the leader now known waits on.
                failForwarded(.outcomeUnknown, unlessSentTo: raft.leader, term: raft.term)
            }
            if (lastLeadership?.role == .leader) != (raft.role == .leader) {
                machine.roleChanged(isLeader: raft.role == .leader)
            }
            lastLeadership = leadership
            transport.send(ready.messages)
            reportSnapshots(ready.messages)
            if ready.needsPersist {
                let started = ContinuousClock.now
                try storage.append(hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot)
                try storage.sync()
                options.observer?.walSynced(duration: ContinuousClock.now - started)
            }
            transport.send(ready.messagesAfterPersist)
            reportSnapshots(ready.messagesAfterPersist)
            if let snapshot = ready.snapshot {
                try machine.restore(snapshot.data)
                // Entries the snapshot covered were never applied here one by one:
                // whether a pending proposal is among them cannot be told.
                for index in proposals.keys where index <= snapshot.metadata.index {
                    proposals.removeValue(forKey: index)?.reply(.failure(.outcomeUnknown))
                }
                lastSnapshotIndex = max(lastSnapshotIndex, snapshot.metadata.index)
            }
            // Before this Ready's entries apply: an answer may name one of them.
            let applied = max(raft.appliedIndex, ready.snapshot?.metadata.index ?? 0)
            for answer in ready.forwarded { forwardedAnswered(answer, applied: applied) }
            // Raft applies configuration changes in advance(); the machine hears
            // of each in log order, with whether Raft will accept it.
            var conf = raft.confState
            let applyStarted = ContinuousClock.now
            for entry in ready.committedEntries {
                var result: Machine.Result?
                if entry.kind == .normal && !entry.data.isEmpty {
                    result = machine.apply(entry.data, index: entry.index)
                } else if entry.kind == .confChange, let change = ConfChange(decoding: entry.data) {
                    let next = try? conf.applying(change)
                    if let next { conf = next }
                    result = machine.applyConfChange(change, accepted: next != nil, index: entry.index)
                }
                if let pending = proposals.removeValue(forKey: entry.index) {
                    if pending.term == entry.term, let result {
                        pending.reply(.success(result))
                    } else {
                        // Another leader's entry took this index: ours is gone.
                        pending.reply(.failure(.leaderChanged))
                        options.observer?.proposalFailed()
                    }
                }
            }
            if !ready.committedEntries.isEmpty {
                options.observer?.applied(entries: ready.committedEntries.count, duration: ContinuousClock.now - applyStarted)
            }
            for state in ready.readStates {
                guard let context = Self.decode(state.context) else { continue }
                confirmedReads.append((state.index, context))
            }
            raft.advance(ready)
            serveConfirmedReads()
            maybeSnapshot()
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

    private func serveConfirmedReads() {
        let applied = raft.appliedIndex
        var waiting: [(index: UInt64, context: UInt64)] = []
        for read in confirmedReads {
            if read.index <= applied, let pending = reads.removeValue(forKey: read.context) {
                pending.reply(.success(machine.read(pending.query)))
            } else if read.index > applied {
                waiting.append(read)
            }
        }
        confirmedReads = waiting
    }

    /// Every `snapshotEvery` applied entries, snapshots the machine without
    /// stopping the loop: the state is frozen here (cheap), then encoded and
    /// its file written and synced on a background queue; the loop installs it
    /// (WAL marker, log compaction) when told it is written. A large state
    /// written on the loop stalled heartbeats long enough to lose the leader.
    private func maybeSnapshot() {
        let applied = raft.appliedIndex
        guard !snapshotInFlight, applied >= lastSnapshotIndex + options.snapshotEvery,
            let term = raft.term(at: applied)
        else { return }
        let metadata = SnapshotMetadata(index: applied, term: term, confState: raft.confState)
        let encode = machine.freezeSnapshot()
        let directory = storage.directory
        snapshotInFlight = true
        snapshotStarted = .now
        snapshotQueue.async { [weak self] in
            let result: Result<Snapshot, WALError>
            do throws(WALError) {
                let snapshot = Snapshot(metadata: metadata, data: encode())
                try DiskStorage.writeSnapshotFile(snapshot, storageDirectory: directory)
                result = .success(snapshot)
            } catch {
                result = .failure(error)
            }
            self?.enqueue(.snapshotWritten(result))
        }
    }

    private func installSnapshot(_ snapshot: Snapshot) {
        let index = snapshot.metadata.index
        do {
            try storage.installSnapshotFile(snapshot)
            lastSnapshotIndex = max(lastSnapshotIndex, index)
            if index > options.snapshotKeep { try storage.compact(upTo: index - options.snapshotKeep) }
        } catch {
            // A failed snapshot is retried at the next threshold; the log still has everything.
        }
    }

    private func failForwarded(_ error: NodeError, unlessSentTo leader: NodeID = .none, term: UInt64 = 0) {
        for (context, batch) in forwarded where leader == .none || batch.leader != leader || batch.term != term {
            forwarded.removeValue(forKey: context)
            for reply in batch.replies { reply(.failure(error)) }
        }
    }

    private func failReads(_ error: NodeError) {
        for (_, pending) in reads { pending.reply(.failure(error)) }
        reads.removeAll()
        confirmedReads.removeAll()
    }

    private func publishStatus() {
        let status = NodeStatus(
            id: id, role: raft.role, leader: raft.leader, term: raft.term, commitIndex: raft.commitIndex,
            appliedIndex: raft.appliedIndex, voters: raft.confState.voters, learners: raft.confState.learners,
            running: true, matchIndexes: raft.matchIndexes, pendingProposals: proposals.count,
            snapshotIndex: lastSnapshotIndex)
        published.withLock { $0 = status }
    }
}
