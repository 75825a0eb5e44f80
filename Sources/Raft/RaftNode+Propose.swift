// Client-facing operations on the leader: proposals, membership changes and
// leadership transfer.

extension RaftNode {
    /// Appends `data` to the log. Returns the index and term it was given: the
    /// proposal succeeded if and only if the entry applied at that index has that
    /// term (a new leader may overwrite an uncommitted entry).
    @discardableResult
    public mutating func propose(_ data: [UInt8]) throws(ProposalError) -> (index: UInt64, term: UInt64) {
        try checkCanPropose()
        appendEntries([Entry(term: term, index: 0, data: data)])
        return (log.lastIndex, term)
    }

    /// Appends several entries at once; returns the index of the first.
    @discardableResult
    public mutating func propose(batch: [[UInt8]]) throws(ProposalError) -> (firstIndex: UInt64, term: UInt64) {
        try checkCanPropose()
        let first = log.lastIndex + 1
        appendEntries(batch.map { Entry(term: term, index: 0, data: $0) })
        return (first, term)
    }

    /// On a follower: hands `batch` to the leader, which appends it as if
    /// proposed there and answers with the index and term the entries got; the
    /// answer arrives as ``ForwardedProposals`` carrying `context` in a later
    /// Ready. If either message is lost nothing arrives: the caller times out.
    /// Throws when this member leads (propose instead) or knows no leader.
    public mutating func forward(_ batch: [[UInt8]], context: [UInt8]) throws(ProposalError) {
        guard role != .leader, leader != .none, leader != id else { throw .notLeader(leader: role == .leader ? id : leader) }
        send(Message(kind: .propose, to: leader, entries: batch.map { Entry(term: 0, index: 0, data: $0) }, context: context))
    }

    /// The leader's side of ``forward(_:context:)``.
    mutating func handleForwardedProposals(_ message: Message) {
        // A duplicate of a batch already taken: its answer was sent then.
        guard forwardedBatches.insert(message.context, from: message.from) else { return }
        let batch = message.entries.map(\.data)
        let taken = message.entries.allSatisfy { $0.kind == .normal && !$0.data.isEmpty }
        do {
            guard taken else { throw ProposalError.notLeader(leader: leader) }
            let (first, term) = try propose(batch: batch)
            send(Message(kind: .proposeResponse, to: message.from, logTerm: term, index: first, context: message.context))
        } catch {
            // Hint 2: refused only while leadership is handed over (the
            // follower offers them to the successor); hint 1 is a refusal
            // whose outcome is unknown (``ForwardedProposals``).
            let handingOver = taken && (error as? ProposalError) == .leadershipTransferInProgress
            send(Message(kind: .proposeResponse, to: message.from, reject: true, rejectHint: handingOver ? 2 : 0, context: message.context))
        }
    }

    /// Proposes a single-server membership change. Refused while another is being
    /// applied and until the leader has committed an entry of its own term.
    @discardableResult
    public mutating func proposeConfChange(_ change: ConfChange) throws(ProposalError) -> (index: UInt64, term: UInt64) {
        try checkCanPropose()
        if pendingConfIndex > log.applied { throw .confChangeInProgress }
        if log.term(at: log.committed) != term { throw .leaderNotReady }
        do {
            _ = try confState.applying(change)
        } catch {
            throw .invalidConfChange(error)
        }
        appendEntries([Entry(term: term, index: 0, kind: .confChange, data: change.encoded())])
        pendingConfIndex = log.lastIndex
        return (log.lastIndex, term)
    }

    private func checkCanPropose() throws(ProposalError) {
        guard role == .leader else { throw .notLeader(leader: leader) }
        // Removed from the voters: it only hands over now.
        guard confState.isVoter(id) else { throw .notLeader(leader: .none) }
        if leadTransferee != .none { throw .leadershipTransferInProgress }
    }

    /// Hands leadership to `target` (thesis §3.10): bring it up to date, then tell
    /// it to campaign at once. Proposals are refused meanwhile; the attempt is
    /// abandoned after an election timeout.
    public mutating func transferLeadership(to target: NodeID) throws(ProposalError) {
        guard role == .leader else { throw .notLeader(leader: leader) }
        guard target != id else { return }
        guard confState.isVoter(target), progress[target] != nil else { throw .unknownTransferTarget(target) }
        if leadTransferee == target { return }
        leadTransferee = target
        reads.leaseRevoked = true
        electionElapsed = 0
        if progress[target]?.match == log.lastIndex {
            send(Message(kind: .timeoutNow, to: target))
        } else {
            sendAppend(to: target, sendIfEmpty: true)
        }
    }

    /// The member leadership is being handed to, or none.
    public var transferee: NodeID { leadTransferee }
}
