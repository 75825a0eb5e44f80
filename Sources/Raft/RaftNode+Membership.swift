// Membership changes take effect when applied (as in etcd-io/raft). One at a time,
// and never before the leader has committed an entry of its term, which keeps any
// two configurations in force at once overlapping (docs/raft.md).

extension RaftNode {
    /// Applies a committed `.confChange` entry: updates the configuration and the
    /// leader's per-member progress.
    mutating func applyConfChange(_ entry: Entry) {
        guard let change = ConfChange(decoding: entry.data) else {
            // A newer binary's kind of change: this member no longer knows its
            // configuration, so it must not count votes (``campaign(_:)``)
            // until its state machine, reaching the entry, stops it.
            unreadableConfChange = unreadableConfChange ?? entry.index
            return
        }
        guard let next = try? confState.applying(change) else { return }
        confState = next
        guard role == .leader else { return }
        let members = confState.voters + confState.learners
        for member in members {
            if progress[member] == nil {
                var pr = Progress(
                    next: log.lastIndex + 1, isLearner: false,
                    maxInflight: config.maxInflightMessages, maxInflightBytes: config.maxInflightBytes)
                // A new member may need a snapshot right away.
                pr.recentActive = true
                progress[member] = pr
            }
            progress[member]?.isLearner = confState.isLearner(member)
        }
        for member in progress.keys where !members.contains(member) {
            progress[member] = nil
            reads.acked[member] = nil
        }
        if leadTransferee != .none && !confState.isVoter(leadTransferee) { leadTransferee = .none }
        // A smaller quorum may commit more; new members need entries.
        _ = maybeCommit()
        needsBroadcast = true
        // A leader that removed or demoted itself keeps leading — without counting
        // itself — until it has handed over (thesis §4.2.2). Stepping down at once
        // can strand the rest: they may not know the change committed, and this
        // member's log may be ahead of theirs, so none of them could win.
        handOverIfRemoved()
    }

    /// A leader outside the voters transfers leadership to its most caught-up
    /// voter (the lowest id among equals) it has not tried yet: a transfer
    /// that did not finish within an election timeout is retried with the
    /// next, as the first may be down — its match index stays where it
    /// stopped, and a removed leader's log no longer grows, so it would
    /// otherwise be chosen again and again (review finding).
    mutating func handOverIfRemoved() {
        guard role == .leader, !confState.isVoter(id), leadTransferee == .none else { return }
        var candidates = confState.voters.filter { !handOverTried.contains($0) }
        if candidates.isEmpty {
            handOverTried = []
            candidates = confState.voters
        }
        let target = candidates.max { a, b in
            let (ma, mb) = (progress[a]?.match ?? 0, progress[b]?.match ?? 0)
            return ma != mb ? ma < mb : a > b
        }
        guard let target else { return }
        handOverTried.insert(target)
        try? transferLeadership(to: target)
    }
}
