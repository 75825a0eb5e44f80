import Dispatch
import Foundation
import Raft
import RaftStorage
import Synchronization

/// The apply side of a member: a thread of its own that owns the replicated
/// state machine. The node loop hands it committed entries in log order, with
/// the replies waiting on them, then confirmed reads and work on the machine;
/// it applies, answers, and decides when to snapshot. Applying one large
/// entry (a DeleteRange of a million keys) therefore never holds up the loop's
/// heartbeats, WAL writes or peer messages — etcd's apply goroutine, for the
/// same reason.
///
/// Jobs run in the order they are posted: a read posted after a batch sees
/// that batch applied. Thread safety: the queue and `applied` are
/// synchronized; the machine and all other state belong to the apply thread.
final class Applier<Machine: ReplicatedStateMachine>: @unchecked Sendable {
    typealias ProposalReply = @Sendable (Result<Machine.Result, NodeError>) -> Void
    typealias ReadReply = @Sendable (Result<Machine.ReadResult, NodeError>) -> Void

    /// A proposal made through this member, waiting on the entry at `index`:
    /// it succeeded if and only if the entry there has `term`.
    struct Waiter {
        var index: UInt64
        var term: UInt64
        var reply: ProposalReply
    }

    enum Job {
        /// Committed entries in log order, starting right after the last
        /// applied one; `conf` is the membership in force before the first.
        /// `waiters` are in index order.
        case entries([Entry], conf: ConfState, waiters: [Waiter])
        /// A snapshot from the leader replaces the state.
        case restore(Snapshot)
        case read(Machine.Query, ReadReply)
        /// `refused` runs instead of `body` if the job never runs.
        case perform(@Sendable (Machine) -> Void, refused: (@Sendable () -> Void)?)
        /// A ``perform`` that an overdue leader tick runs first, out of
        /// turn: something the tick must see (a keep-alive that arrived
        /// while a long apply ran holds its lease's expiry).
        case beforeTick(@Sendable (Machine) -> Void, refused: (@Sendable () -> Void)?)
        /// This member became leader in `term`, or stopped leading. The
        /// machine hears of a promotion only when the first entry of `term`
        /// applies (the leader's empty entry): every entry of earlier terms is
        /// applied by then (etcd promotes its lessor at the same point).
        case roleChanged(isLeader: Bool, term: UInt64)
        /// Time advanced on the leader: the machine may want to propose. Run
        /// once the queue is empty (see ``run()``).
        case leaderTick
        /// The loop is done with the snapshot frozen here at this index:
        /// installed with `bytes` of state, or not (nil: its write failed, or
        /// a newer snapshot got there first). The next one is due
        /// `snapshotEvery` entries later either way (a failing disk is not
        /// retried after every batch).
        case snapshotSettled(UInt64, bytes: Int?)
    }

    /// What the applier tells the node loop.
    struct Hooks: Sendable {
        /// Entries the machine wants proposed (lease expiries).
        var propose: @Sendable ([[UInt8]]) -> Void
        /// The snapshot file for `metadata` was written in the background
        /// (with `bytes` bytes of state), or could not be.
        var snapshotWritten: @Sendable (SnapshotMetadata, Result<Int, WALError>, _ started: ContinuousClock.Instant) -> Void
        /// A snapshot could not be restored: the member must stop.
        var failed: @Sendable (any Error) -> Void
        /// Called after every batch with the new applied index.
        var applied: @Sendable (UInt64) -> Void
    }

    private let machine: Machine
    private let hooks: Hooks
    private let observer: (any NodeObserver)?
    private let snapshotEvery: UInt64
    /// See ``NodeLoop/Options/snapshotLogRatio``.
    private let snapshotLogRatio: Double
    /// Where snapshot files go (the member's ``DiskStorage`` directory).
    private let storageDirectory: String
    private let queue = Mutex((jobs: [Job](), stopping: false))
    private let wakeup = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let snapshotQueue: DispatchQueue
    /// The last applied index, readable from any thread (the loop's back-pressure check).
    let appliedIndex: Atomic<UInt64>

    // Apply-thread state.
    private var applied: UInt64
    private var appliedTerm: UInt64
    private var conf: ConfState
    private var lastSnapshotIndex: UInt64
    /// The size of the latest snapshot's state, and the entry bytes applied
    /// since it was frozen (the snapshot write-amplification bound).
    private var lastSnapshotBytes: Int
    private var logBytesSinceSnapshot = 0
    /// `logBytesSinceSnapshot` when the snapshot in flight was frozen.
    private var logBytesAtFreeze = 0
    /// A snapshot is being encoded and written off this thread; one at a time.
    private var snapshotInFlight = false
    /// A snapshot failed to restore: the state is not to be trusted any more.
    private var broken = false
    /// Snapshots are encoded and written this many bytes at a time.
    static var snapshotChunk: Int { 1 << 20 }
    /// A leader tick waits for the queue to empty, since when.
    private var tickDue: ContinuousClock.Instant?
    /// The term of a leadership the machine has not yet been told of (see
    /// ``Job/roleChanged(isLeader:term:)``).
    private var promotionTerm: UInt64?

    /// `snapshot`: the metadata of the snapshot the machine was restored
    /// from, `snapshotBytes` the size of its data.
    init(
        machine: Machine, snapshot: SnapshotMetadata, snapshotBytes: Int, snapshotEvery: UInt64,
        snapshotLogRatio: Double, storageDirectory: String, observer: (any NodeObserver)?, label: String, hooks: Hooks
    ) {
        self.storageDirectory = storageDirectory
        self.machine = machine
        self.hooks = hooks
        self.observer = observer
        self.snapshotEvery = snapshotEvery
        self.snapshotLogRatio = snapshotLogRatio
        self.lastSnapshotBytes = snapshotBytes
        self.applied = snapshot.index
        self.appliedTerm = snapshot.term
        self.conf = snapshot.confState
        self.lastSnapshotIndex = snapshot.index
        self.appliedIndex = Atomic(snapshot.index)
        self.snapshotQueue = DispatchQueue(label: "\(label)-snapshot")
    }

    /// Starts the apply thread; jobs posted before run then.
    func start(name: String) {
        let thread = Thread { [self] in
            run()
            // A snapshot still being written finishes first (its file is then
            // harmless: without its WAL marker, recovery removes it).
            snapshotQueue.sync {}
            finished.signal()
        }
        thread.name = name
        thread.start()
    }

    /// Runs everything posted so far, then ends the thread and waits for it.
    /// Later posts are refused. Call once, after ``start(name:)``.
    func stop() {
        queue.withLock { $0.stopping = true }
        wakeup.signal()
        finished.wait()
    }

    /// Stops an applier that was never started: the jobs posted to it are
    /// refused, and it takes no more.
    func refuseAll() {
        let jobs = queue.withLock { queue in
            queue.stopping = true
            defer { queue.jobs = [] }
            return queue.jobs
        }
        for job in jobs { refuse(job) }
    }

    /// Queues `job`; false if the applier has stopped taking work.
    @discardableResult
    func post(_ job: Job) -> Bool {
        // Only the first job of a batch signals (the loop takes them all at once).
        let (accepted, first) = queue.withLock { queue -> (Bool, Bool) in
            guard !queue.stopping else { return (false, false) }
            queue.jobs.append(job)
            return (true, queue.jobs.count == 1)
        }
        if first { wakeup.signal() } else if !accepted { refuse(job) }
        return accepted
    }

    /// Answers a job that will never run.
    private func refuse(_ job: Job) {
        switch job {
        case let .entries(_, _, waiters): for waiter in waiters { waiter.reply(.failure(.outcomeUnknown)) }
        case let .read(_, reply): reply(.failure(.stopped))
        case let .perform(_, refused), let .beforeTick(_, refused): refused?()
        default: break
        }
    }
}

// MARK: - The apply thread

extension Applier {
    private func run() {
        while true {
            wakeup.wait()
            let (jobs, stopping) = queue.withLock { queue in
                defer { queue.jobs.removeAll(keepingCapacity: true) }
                return (queue.jobs, queue.stopping)
            }
            let before = applied
            for job in jobs { handle(job) }
            if applied != before {
                appliedIndex.store(applied, ordering: .releasing)
                hooks.applied(applied)
                maybeSnapshot()
            }
            if stopping { return }
            runDueTick()
        }
    }

    /// Runs a due leader tick once nothing else is queued, or after waiting
    /// half a second (etcd checks lease expiry every 500 ms). Ticks queue up
    /// while a long apply runs; keep-alives that arrived meanwhile must renew
    /// their leases before a tick judges expiry (the node loop used to serve
    /// both in that order after a stall).
    private func runDueTick() {
        guard let due = tickDue, !broken else { return }
        let idle = queue.withLock { $0.jobs.isEmpty }
        guard idle || ContinuousClock.now - due > .milliseconds(500) else { return }
        if !idle {
            // Overdue with work still queued: what the tick must see goes first.
            let first = queue.withLock { queue -> [Job] in
                var first: [Job] = []
                queue.jobs.removeAll { job in
                    guard case .beforeTick = job else { return false }
                    first.append(job)
                    return true
                }
                return first
            }
            for job in first { handle(job) }
        }
        tickDue = nil
        let proposals = machine.leaderTick().filter { !$0.isEmpty }
        if !proposals.isEmpty { hooks.propose(proposals) }
    }

    private func handle(_ job: Job) {
        if broken {
            refuse(job)
            return
        }
        switch job {
        case let .entries(entries, conf, waiters):
            apply(entries, conf: conf, waiters: waiters)
        case let .restore(snapshot):
            do {
                try machine.restore(snapshot.data)
                applied = snapshot.metadata.index
                appliedTerm = snapshot.metadata.term
                conf = snapshot.metadata.confState
                lastSnapshotIndex = max(lastSnapshotIndex, snapshot.metadata.index)
                lastSnapshotBytes = snapshot.data.count
                logBytesSinceSnapshot = 0
                logBytesAtFreeze = 0
            } catch {
                broken = true
                hooks.failed(error)
            }
        case let .read(query, reply):
            reply(.success(machine.read(query)))
        case let .perform(body, _), let .beforeTick(body, _):
            body(machine)
        case let .roleChanged(isLeader, term):
            if isLeader && appliedTerm < term {
                promotionTerm = term
            } else {
                if !isLeader { tickDue = nil }
                promotionTerm = nil
                machine.roleChanged(isLeader: isLeader)
            }
        case .leaderTick:
            if tickDue == nil { tickDue = .now }
        case let .snapshotSettled(index, bytes):
            snapshotInFlight = false
            lastSnapshotIndex = max(lastSnapshotIndex, index)
            // Only an installed snapshot lets the log behind it go.
            if let bytes {
                logBytesSinceSnapshot = max(logBytesSinceSnapshot - logBytesAtFreeze, 0)
                lastSnapshotBytes = bytes
            }
            logBytesAtFreeze = 0
        }
    }

    /// Applies one batch and answers its waiters. Raft applies membership
    /// changes itself when it hands them out; the machine hears of each in log
    /// order, with whether Raft accepted it.
    private func apply(_ entries: [Entry], conf start: ConfState, waiters: [Waiter]) {
        var conf = start
        var next = waiters.startIndex
        let started = ContinuousClock.now
        for entry in entries {
            if let term = promotionTerm, entry.term >= term {
                promotionTerm = nil
                machine.roleChanged(isLeader: true)
            }
            var result: Machine.Result?
            if entry.kind == .normal && !entry.data.isEmpty {
                result = machine.apply(entry.data, index: entry.index)
            } else if entry.kind == .confChange {
                guard let change = ConfChange(decoding: entry.data) else {
                    // A membership change this binary cannot read (a newer
                    // kind): going on would count another quorum than the
                    // members that read it. The member stops, loudly.
                    broken = true
                    self.conf = conf
                    hooks.failed(UnreadableConfChange(index: entry.index))
                    // The rest of the batch is committed: the members that
                    // read the change apply it. Each waiter's write happened
                    // unless another leader's entry took its index (review
                    // finding: all were told "stopped", i.e. never proposed).
                    for waiter in waiters[next...] {
                        let taken = entries.first { $0.index == waiter.index }.map { $0.term == waiter.term } ?? true
                        waiter.reply(.failure(taken ? .outcomeUnknown : .leaderChanged))
                    }
                    return
                }
                let accepted = try? conf.applying(change)
                if let accepted { conf = accepted }
                result = machine.applyConfChange(change, accepted: accepted != nil, index: entry.index)
            }
            applied = entry.index
            appliedTerm = entry.term
            logBytesSinceSnapshot += entry.data.count
            while next < waiters.endIndex, waiters[next].index <= entry.index {
                let waiter = waiters[next]
                next += 1
                if waiter.index == entry.index, waiter.term == entry.term {
                    // Applied; a machine that gives no result leaves the caller
                    // not knowing what it came to (it did happen).
                    waiter.reply(result.map { .success($0) } ?? .failure(.outcomeUnknown))
                } else {
                    // Another leader's entry took this index: ours is gone.
                    waiter.reply(.failure(.leaderChanged))
                    observer?.proposalFailed()
                }
            }
        }
        // Waiters past the batch cannot happen (the loop takes them from its
        // entries); answered rather than dropped all the same.
        for waiter in waiters[next...] { waiter.reply(.failure(.outcomeUnknown)) }
        self.conf = conf
        if !entries.isEmpty { observer?.applied(entries: entries.count, duration: .now - started) }
    }

    /// Every `snapshotEvery` applied entries — once they also hold
    /// `snapshotLogRatio` times the last snapshot's size in bytes — snapshots
    /// the machine without stopping either thread: the state is frozen here
    /// (cheap), then encoded and its file written and synced on a background
    /// queue; the loop installs it (WAL marker, log compaction) when told it
    /// is written.
    private func maybeSnapshot() {
        // Called after every batch: the cheap checks first. A broken member
        // (an unreadable membership change) snapshots nothing more.
        guard !broken, !snapshotInFlight, applied >= lastSnapshotIndex + snapshotEvery else { return }
        // A state that shrank since (compaction) is measured as it is now.
        let stateBytes = min(lastSnapshotBytes, machine.approximateStateBytes ?? .max)
        guard Double(logBytesSinceSnapshot) >= snapshotLogRatio * Double(stateBytes) else { return }
        logBytesAtFreeze = logBytesSinceSnapshot
        let metadata = SnapshotMetadata(index: applied, term: appliedTerm, confState: conf)
        let frozen = machine.freezeSnapshotStream()
        snapshotInFlight = true
        let started = ContinuousClock.now
        let hooks = hooks
        let directory = storageDirectory
        snapshotQueue.async {
            // Counted first (one scan), then encoded straight into the file
            // in chunks: a state of hundreds of megabytes is never held whole.
            let bytes = frozen.count()
            let result: Result<Int, WALError>
            do throws(WALError) {
                try DiskStorage.writeSnapshotFile(metadata: metadata, dataLength: bytes, storageDirectory: directory) { sink in
                    frozen.write(Self.snapshotChunk, sink)
                }
                result = .success(bytes)
            } catch {
                result = .failure(error)
            }
            hooks.snapshotWritten(metadata, result, started)
        }
    }
}

/// A committed membership change that this binary cannot decode.
struct UnreadableConfChange: Error, CustomStringConvertible {
    let index: UInt64
    var description: String {
        "the membership change at index \(index) is of a kind this version cannot read: upgrade this member"
    }
}
