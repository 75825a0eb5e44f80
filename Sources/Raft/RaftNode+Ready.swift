// Handing work to the driver and taking its report back.

extension RaftNode {
    /// Whether ``ready()`` has anything for the driver.
    public var hasReady: Bool {
        if needsBroadcast || reads.hasUnsent { return true }
        if !messages.isEmpty || !messagesAfterPersist.isEmpty || !readStates.isEmpty || !forwarded.isEmpty { return true }
        if !log.unstable.entries.isEmpty || log.unstable.snapshot != nil { return true }
        if log.hasNextCommittedEntries { return true }
        return hardState != previousHardState || softState != previousSoftState
    }

    /// Collects what the driver must do now. Call ``advance(_:)`` with the result
    /// before calling `ready()` again.
    public mutating func ready() -> Ready {
        if role == .leader {
            if needsBroadcast { broadcastAppend() }
            if reads.hasUnsent { startRound() }
        }
        needsBroadcast = false
        var ready = Ready()
        ready.entries = log.unstable.entries
        ready.snapshot = log.unstable.snapshot
        ready.committedEntries = log.nextCommittedEntries()
        ready.messages = messages
        ready.messagesAfterPersist = messagesAfterPersist
        ready.readStates = readStates
        ready.forwarded = forwarded
        forwarded.removeAll()
        messages.removeAll(keepingCapacity: true)
        messagesAfterPersist.removeAll(keepingCapacity: true)
        readStates.removeAll()
        let hard = hardState
        if hard.term != persistedHardState.term || hard.vote != persistedHardState.vote {
            // A leader that won within this Ready (a single voter) must not send
            // before its new term and vote are durable: after a crash it could win
            // the same term again and send different entries under it.
            ready.messagesAfterPersist.insert(contentsOf: ready.messages, at: 0)
            ready.messages.removeAll()
        }
        if hard != previousHardState {
            ready.hardState = hard
            previousHardState = hard
        }
        ready.mustSync = !ready.entries.isEmpty || ready.snapshot != nil
            || hard.term != persistedHardState.term || hard.vote != persistedHardState.vote
            || commitPassesConfChange(from: persistedHardState.commit, to: hard.commit)
        let soft = softState
        if soft != previousSoftState {
            ready.softState = soft
            previousSoftState = soft
        }
        return ready
    }

    /// Whether moving the commit index from `old` to `new` commits a membership
    /// change: then the commit index must be synced although nothing else
    /// changed. Otherwise a power loss could take a survivor back to the
    /// configuration before the change, and if the change removed the members
    /// it now needs votes from (they apply their removal and stop), it could
    /// never elect a leader again. A long move is synced without looking.
    func commitPassesConfChange(from old: UInt64, to new: UInt64) -> Bool {
        guard new > old else { return false }
        guard new - old <= 4096 else { return true }
        guard let entries = try? log.slice(old + 1, new + 1, maxBytes: .max) else { return true }
        return entries.contains { $0.kind == .confChange }
    }

    /// The driver did everything `ready` asked: entries and hard state are durable,
    /// committed entries are applied.
    public mutating func advance(_ ready: Ready) {
        if let hardState = ready.hardState { persistedHardState = hardState }
        if let snapshot = ready.snapshot {
            log.unstable.stableSnapshotTo(index: snapshot.metadata.index)
            log.appliedTo(snapshot.metadata.index)
        }
        if let last = ready.entries.last {
            log.unstable.stableTo(index: last.index, term: last.term)
            leaderPersisted(upTo: log.persistedLastIndex)
        }
        for entry in ready.committedEntries where entry.kind == .confChange {
            applyConfChange(entry)
        }
        if let last = ready.committedEntries.last {
            log.appliedTo(last.index)
        }
        if let deferred = deferredTransfer, role == .follower, !hasUnappliedConfChanges() {
            deferredTransfer = nil
            if deferred.term == term { campaign(.transfer) }
        }
    }

    /// Entries that bootstrap a brand-new cluster: one committed `addVoter` per
    /// initial member at term 1, so members that join later learn the initial
    /// configuration from the log like any other change. Every initial member
    /// persists the same entries and hard state before creating its node.
    /// `contexts` travels in each member's change (the application's member
    /// record: name, addresses), as etcd's bootstrap entries carry its members.
    public static func bootstrap(
        voters: [NodeID], contexts: [NodeID: [UInt8]] = [:]
    ) -> (hardState: HardState, entries: [Entry]) {
        let entries = voters.sorted().enumerated().map { offset, voter in
            let change = ConfChange(.addVoter, node: voter, context: contexts[voter] ?? [])
            return Entry(term: 1, index: UInt64(offset + 1), kind: .confChange, data: change.encoded())
        }
        return (HardState(term: 1, vote: .none, commit: UInt64(entries.count)), entries)
    }
}
