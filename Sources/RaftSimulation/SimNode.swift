import Raft

/// One simulated member: a ``RaftNode`` over a ``MemoryStorage`` that plays the
/// disk, and the state machine it applies to. A crash throws away the node and
/// the state machine; only the disk survives (and only what was written to it).
public final class SimNode {
    public let id: NodeID
    public let disk: MemoryStorage
    public internal(set) var raft: RaftNode<MemoryStorage>?
    public private(set) var stateMachine = SimStateMachine()
    let baseConfig: RaftConfig
    /// A hard state that only moved the commit index, written but not synced
    /// (``Ready/mustSync`` was false): it survives the process dying (the
    /// server hands it to the kernel), not a power loss; the next synced Ready
    /// or snapshot makes it durable.
    private var unsyncedHardState: HardState?
    /// Commit indexes given up in crashes (lost unsynced hard states), for stats.
    public private(set) var commitsLostInCrashes = 0
    /// What the oracle expects the restart after the last crash to keep.
    var mustKeepAfterCrash: (commit: UInt64, why: String) = (0, "")
    /// The last membership change this run of the member applied.
    private var appliedConfChange: UInt64 = 0

    public var isUp: Bool { raft != nil }

    /// Creates a member. `bootstrap` lists the initial voters for a founding
    /// member; nil for a member that will join an existing cluster.
    public init(id: NodeID, config: RaftConfig, bootstrap: [NodeID]?) throws {
        self.id = id
        self.disk = MemoryStorage()
        var config = config
        config.id = id
        self.baseConfig = config
        if let voters = bootstrap {
            let boot = RaftNode<MemoryStorage>.bootstrap(voters: voters)
            disk.append(boot.entries)
            disk.setHardState(boot.hardState)
        }
        try start(seedSalt: 0)
    }

    /// Starts (or restarts) the member from its disk.
    public func start(seedSalt: UInt64) throws {
        var config = baseConfig
        let snapshot = disk.latestSnapshot
        config.applied = snapshot.metadata.index
        config.seed = baseConfig.seed &+ seedSalt &* 0x5851_F42D_4C95_7F2D
        stateMachine = SimStateMachine(snapshotData: snapshot.data) ?? SimStateMachine()
        raft = try RaftNode(config: config, storage: disk)
    }

    /// Stops the member. A `powerLoss` also loses what was written but not
    /// synced; a process crash does not.
    public func crash(powerLoss: Bool = false) {
        mustKeepAfterCrash = powerLoss
            ? (appliedConfChange, "a membership change it had applied before losing power")
            : (stateMachine.appliedIndex, "what it had applied before the process crashed")
        appliedConfChange = 0
        if powerLoss {
            if let lost = unsyncedHardState, lost.commit > disk.hardState.commit { commitsLostInCrashes += 1 }
            unsyncedHardState = nil
        } else {
            syncHardState()
        }
        raft = nil
    }

    /// What a WAL sync does to the hard state written before it.
    private func syncHardState() {
        if let pending = unsyncedHardState { disk.setHardState(pending) }
        unsyncedHardState = nil
    }

    /// Runs `body` on the live node; nothing when the member is down.
    @discardableResult
    public func with<T>(_ body: (inout RaftNode<MemoryStorage>) throws -> T) rethrows -> T? {
        guard var node = raft else { return nil }
        raft = nil  // keep the node uniquely referenced while it mutates
        defer { raft = node }
        return try body(&node)
    }

    /// Takes a snapshot at the applied index and compacts the log behind it,
    /// keeping `keep` entries for slow followers.
    public func snapshotAndCompact(keep: UInt64) {
        guard let raft else { return }
        let applied = stateMachine.appliedIndex
        guard applied > disk.latestSnapshot.metadata.index else { return }
        syncHardState()  // saving a snapshot syncs the WAL
        do {
            try disk.createSnapshot(index: applied, confState: raft.confState, data: stateMachine.snapshotData())
            if applied > keep { try disk.compact(upTo: applied - keep) }
        } catch {
            // The applied entry is always on disk; nothing to do if not.
        }
    }

    /// The driver's half of the Ready contract, phase by phase, with hooks so the
    /// harness can observe (and interrupt) each phase.
    func processReady(_ handler: some ReadyHandler) {
        var rounds = 0
        while let node = raft, node.hasReady, rounds < 1000 {
            rounds += 1
            guard let ready = with({ $0.ready() }) else { return }
            handler.readyTaken(self, ready)
            for message in ready.messages { handler.send(message) }
            if ready.needsPersist && handler.crashBeforePersist(self) {
                crash()
                return
            }
            if let snapshot = ready.snapshot { disk.applySnapshot(snapshot) }
            disk.append(ready.entries)
            if let hardState = ready.hardState { unsyncedHardState = hardState }
            if ready.mustSync { syncHardState() }
            handler.persisted(self, ready)
            for message in ready.messagesAfterPersist { handler.send(message) }
            if let snapshot = ready.snapshot {
                stateMachine = SimStateMachine(snapshotData: snapshot.data) ?? SimStateMachine()
                handler.installedSnapshot(self, snapshot)
            }
            for entry in ready.committedEntries {
                if entry.kind == .confChange { appliedConfChange = entry.index }
                stateMachine.apply(entry)
                handler.applied(self, entry)
            }
            with { $0.advance(ready) }
            handler.advanced(self, ready)
        }
        if rounds == 1000 { handler.readyLoopStuck(self) }
    }
}

/// What the harness does at each phase of a member's Ready handling.
protocol ReadyHandler: AnyObject {
    func readyTaken(_ node: SimNode, _ ready: Ready)
    func send(_ message: Message)
    /// Return true to crash the member after its early messages left but before
    /// anything of this Ready reached the disk.
    func crashBeforePersist(_ node: SimNode) -> Bool
    func persisted(_ node: SimNode, _ ready: Ready)
    func installedSnapshot(_ node: SimNode, _ snapshot: Snapshot)
    func applied(_ node: SimNode, _ entry: Entry)
    func advanced(_ node: SimNode, _ ready: Ready)
    /// The member still had a Ready after 1000 rounds in a row: a livelock.
    func readyLoopStuck(_ node: SimNode)
}
