import Raft

// The harness's side of each member's Ready: route messages through the faulty
// network, maybe crash before the disk write, and show everything to the oracle.
extension Simulation: ReadyHandler {
    func readyTaken(_ node: SimNode, _ ready: Ready) {
        guard let soft = ready.softState else { return }
        trace("n\(node.id) is \(soft.role) in term \(node.raft?.term ?? 0) (leader n\(soft.leader))")
        if soft.role == .leader, let term = node.raft?.term { leaderTerms.insert(term) }
        oracle.observeRole(node, soft)
    }

    func send(_ message: Message) {
        guard member(message.to) != nil else { return }
        if healed {
            network.enqueue(message, at: now + randomInt(1...2))
            return
        }
        if network.isBlocked(from: message.from, to: message.to) || chance(profile.dropRate) {
            if message.kind == .snapshot { snapshotFailures.append((message.from, message.to)) }
            return
        }
        network.enqueue(message, at: now + randomInt(1...profile.maxDelay))
        if chance(profile.duplicateRate) {
            network.enqueue(message, at: now + randomInt(1...profile.maxDelay))
        }
    }

    func crashBeforePersist(_ node: SimNode) -> Bool {
        guard !healed, chance(profile.crashInReadyRate) else { return false }
        trace("n\(node.id) crashes before persisting its Ready")
        pendingProposals[node.id] = nil
        pendingReads[node.id] = nil
        pendingForwards[node.id] = nil
        downUntil[node.id] = now + randomInt(20...400)
        stats.crashes += 1
        return true
    }

    func persisted(_ node: SimNode, _ ready: Ready) {
        oracle.observePersisted(node, ready.entries)
    }

    func installedSnapshot(_ node: SimNode, _ snapshot: Snapshot) {
        stats.snapshots += 1
        trace("n\(node.id) installed snapshot at \(snapshot.metadata.index)")
        oracle.observeSnapshot(node, snapshot)
        // Proposals the snapshot skipped over have an unknown outcome for the client.
        pendingProposals[node.id] = pendingProposals[node.id]?.filter { $0.key > snapshot.metadata.index }
    }

    func applied(_ node: SimNode, _ entry: Entry) {
        oracle.observeApplied(node, entry, hash: node.stateMachine.hash)
        if entry.kind == .normal, let id = Proposal.decode(entry.data), refusedProposals.contains(id) {
            oracle.fail("forwarding: proposal \(id) was refused as certainly not taken, but n\(node.id) applied it")
        }
        guard let pending = pendingProposals[node.id]?.removeValue(forKey: entry.index) else { return }
        if pending.term == entry.term {
            // The client is told its write succeeded.
            stats.acked += 1
            maxAckedIndex = max(maxAckedIndex, entry.index)
            if healed { ackedAfterHeal = true }
        }
    }

    func readyLoopStuck(_ node: SimNode) { oracle.fail("n\(node.id) kept producing Readys: livelock") }

    func advanced(_ node: SimNode, _ ready: Ready) {
        oracle.observeCommit(node)
        for answer in ready.forwarded {
            guard let context = Proposal.decode(answer.context),
                let ids = pendingForwards[node.id]?.removeValue(forKey: context)
            else { continue }
            guard let first = answer.index else {
                if !answer.outcomeUnknown { refusedProposals.formUnion(ids) }
                continue
            }
            // Tracked like the leader's own: acknowledged once applied here with that term.
            for (offset, id) in ids.enumerated() where first + UInt64(offset) > node.stateMachine.appliedIndex {
                pendingProposals[node.id, default: [:]][first + UInt64(offset)] = (answer.term, id)
            }
        }
        for state in ready.readStates {
            guard let context = Proposal.decode(state.context),
                let issuedAt = pendingReads[node.id]?.removeValue(forKey: context)
            else { continue }
            stats.reads += 1
            if state.index < issuedAt {
                oracle.fail("linearizability: read on n\(node.id) got index \(state.index) but write at \(issuedAt) was acknowledged before it began")
            }
        }
        let applied = node.stateMachine.appliedIndex
        if applied >= node.disk.latestSnapshot.metadata.index + profile.snapshotEvery {
            node.snapshotAndCompact(keep: profile.snapshotKeep)
        }
    }
}
