// Time, roles and elections (Raft paper §5.2, thesis §9.6 pre-vote, §6.2 check-quorum).

extension RaftNode {
    /// Advances logical time by one tick.
    public mutating func tick() {
        if role == .leader { tickLeader() } else { tickElection() }
    }

    private mutating func tickElection() {
        if restartLeaseTicks > 0 { restartLeaseTicks -= 1 }
        if let deferred = deferredTransfer {
            // As long as the leader waits for its transfer, no longer.
            deferredTransfer = deferred.ticksLeft > 1 ? (deferred.term, deferred.ticksLeft - 1) : nil
        }
        electionElapsed += 1
        if isPromotable && electionElapsed >= randomizedElectionTimeout {
            electionElapsed = 0
            campaign(config.preVote ? .preElection : .election)
        }
    }

    private mutating func tickLeader() {
        leaderTicks += 1
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= config.electionTick {
            electionElapsed = 0
            if config.checkQuorum && !quorumRecentlyActive() {
                // Check-quorum: a leader cut off from a majority steps down, so a
                // stale leader stops accepting work (thesis §6.2).
                becomeFollower(term: term, leader: .none)
                return
            }
            // A transfer that did not finish within an election timeout is abandoned
            // (and retried if this leader was removed and must hand over).
            leadTransferee = .none
            handOverIfRemoved()
        }
        if heartbeatElapsed >= config.heartbeatTick {
            heartbeatElapsed = 0
            startRound()
        }
    }

    /// Whether a majority of voters (this node included) was heard from since the
    /// last check; resets the marks for the next round.
    private mutating func quorumRecentlyActive() -> Bool {
        var active = 0
        for voter in confState.voters {
            if voter == id || progress[voter]?.recentActive == true { active += 1 }
        }
        for peer in progress.keys where peer != id { progress[peer]?.recentActive = false }
        return active >= Quorum.majority(of: confState.voters.count)
    }

    /// Starts an election now, as if the election timeout had elapsed.
    public mutating func campaign() {
        campaign(config.preVote ? .preElection : .election)
    }

    enum CampaignKind { case preElection, election, transfer }

    mutating func campaign(_ kind: CampaignKind) {
        guard isPromotable, role != .leader || kind == .transfer else { return }
        // A member that has committed but not applied a membership change could
        // count votes against the wrong configuration; wait until it applies it.
        if hasUnappliedConfChanges() || unreadableConfChange != nil { return }
        let voteTerm: UInt64
        let kindToSend: MessageKind
        if kind == .preElection {
            becomePreCandidate()
            voteTerm = term + 1
            kindToSend = .preVote
        } else {
            becomeCandidate()
            voteTerm = term
            kindToSend = .vote
        }
        if recordVote(from: id, granted: true) == .won {
            // A single voter wins at once.
            if kind == .preElection { campaign(.election) } else { becomeLeader() }
            return
        }
        let context = kind == .transfer ? Message.transferContext : []
        for voter in confState.voters where voter != id {
            send(Message(
                kind: kindToSend, to: voter, term: voteTerm, logTerm: log.lastTerm,
                index: log.lastIndex, context: context))
        }
    }

    func hasUnappliedConfChanges() -> Bool {
        guard log.committed > log.applied else { return false }
        var next = log.applied + 1
        while next <= log.committed {
            guard let batch = try? log.slice(next, log.committed + 1, maxBytes: 1 << 20),
                let last = batch.last
            else { return false }
            if batch.contains(where: { $0.kind == .confChange }) { return true }
            next = last.index + 1
        }
        return false
    }

    /// Records a vote and returns the election's outcome so far.
    mutating func recordVote(from voter: NodeID, granted: Bool) -> Quorum.VoteResult {
        if votes[voter] == nil { votes[voter] = granted }
        return Quorum.voteResult(voters: confState.voters, votes: votes)
    }

    mutating func becomeFollower(term newTerm: UInt64, leader newLeader: NodeID) {
        reset(term: newTerm)
        role = .follower
        leader = newLeader
    }

    private mutating func becomePreCandidate() {
        // Pre-vote does not change the term or the vote: a partitioned member can
        // retry forever without inflating terms (thesis §9.6).
        votes = [:]
        progress = [:]
        reads.reset()
        leadTransferee = .none
        role = .preCandidate
        leader = .none
    }

    private mutating func becomeCandidate() {
        reset(term: term + 1)
        vote = id
        role = .candidate
    }

    mutating func becomeLeader() {
        reset(term: term)
        forwardedBatches.removeAll()
        role = .leader
        leader = id
        let next = log.lastIndex + 1
        for member in confState.voters + confState.learners {
            progress[member] = Progress(
                next: next, isLearner: confState.isLearner(member),
                maxInflight: config.maxInflightMessages, maxInflightBytes: config.maxInflightBytes)
        }
        // The leader's own replication is what it has persisted; the rest counts
        // once the driver reports it durable (advance).
        progress[id]?.match = log.persistedLastIndex
        progress[id]?.becomeReplicate()
        progress[id]?.recentActive = true
        // No membership change until everything up to here is committed and applied.
        pendingConfIndex = log.lastIndex
        // A no-op entry of the new term lets earlier entries commit (§5.4.2, §8).
        appendEntries([Entry(term: term, index: 0)])
    }

    /// Moves to `newTerm` (forgetting the vote if the term changes) and clears
    /// everything that belongs to a role.
    private mutating func reset(term newTerm: UInt64) {
        if newTerm != term {
            term = newTerm
            vote = .none
        }
        leader = .none
        electionElapsed = 0
        heartbeatElapsed = 0
        leaderTicks = 0
        randomizedElectionTimeout = config.electionTick + Int(random.next() % UInt64(config.electionTick))
        votes = [:]
        progress = [:]
        leadTransferee = .none
        handOverTried = []
        deferredTransfer = nil
        needsBroadcast = false
        reads.reset()
    }
}
