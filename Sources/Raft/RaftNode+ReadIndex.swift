// Linearizable reads without writing to the log (thesis §6.4), and the optional
// leader lease (§6.4.1).

extension RaftNode {
    /// Asks for a read index. The answer arrives as a ``ReadState`` carrying
    /// `context` in a later Ready; serve the read once the applied index reaches it.
    /// A follower forwards the request to its leader. Throws when no leader is known.
    public mutating func readIndex(context: [UInt8]) throws(ProposalError) {
        switch role {
        case .leader:
            handleReadIndex(from: id, context: context)
        default:
            guard leader != .none else { throw .notLeader(leader: .none) }
            send(Message(kind: .readIndex, to: leader, context: context))
        }
    }

    mutating func handleReadIndex(from requester: NodeID, context: [UInt8]) {
        let request = ReadRequest(index: log.committed, from: requester, context: context)
        if log.term(at: log.committed) != term {
            reads.waitingForCommit.append(request)
        } else if leaseIsValid {
            answerRead(request)
        } else {
            reads.unsent.append(request)
        }
    }

    /// Lease reads (off by default): the leader answers without a round while a
    /// quorum acknowledged a heartbeat sent less than an election timeout ago,
    /// minus two ticks for tick phase. Followers ignore votes for an election
    /// timeout after each heartbeat, so no other leader can exist yet — provided
    /// clocks tick at the same rate (thesis §6.4.1).
    var leaseIsValid: Bool {
        guard config.readOnly == .leaseBased, config.checkQuorum, !reads.leaseRevoked,
            leadTransferee == .none, let start = reads.leaseStart
        else { return false }
        return leaderTicks < start + config.electionTick - 2
    }

    /// The first commit of the term makes the waiting requests' index current.
    mutating func releaseReadsWaitingForCommit() {
        guard !reads.waitingForCommit.isEmpty, log.term(at: log.committed) == term else { return }
        let waiting = reads.waitingForCommit
        reads.waitingForCommit.removeAll()
        for var request in waiting {
            request.index = log.committed
            if leaseIsValid { answerRead(request) } else { reads.unsent.append(request) }
        }
    }

    /// Broadcasts one numbered heartbeat round carrying every read that arrived
    /// since the last one. Periodic heartbeats are rounds too, so a round whose
    /// messages were lost is confirmed by the next.
    mutating func startRound() {
        let round = reads.nextRound
        reads.nextRound += 1
        reads.rounds.append(.init(number: round, sentAt: leaderTicks, requests: reads.unsent))
        reads.unsent.removeAll()
        reads.pruneEmptyRounds(limit: 4 * config.electionTick)
        broadcastHeartbeat(context: ReadIndexState.encode(round: round))
        confirmRounds()
    }

    mutating func handleReadAck(from peer: NodeID, context: [UInt8]) {
        guard let round = ReadIndexState.decode(context), confState.isVoter(peer) else { return }
        if round > reads.acked[peer, default: 0] { reads.acked[peer] = round }
        confirmRounds()
    }

    /// Answers every round a quorum (this leader included) has acknowledged.
    private mutating func confirmRounds() {
        var acks: [UInt64] = []
        acks.reserveCapacity(confState.voters.count)
        for voter in confState.voters {
            acks.append(voter == id ? UInt64.max : reads.acked[voter, default: 0])
        }
        let confirmed = Quorum.committedIndex(matches: acks)
        var answered = 0
        for round in reads.rounds {
            guard round.number <= confirmed else { break }
            reads.leaseStart = round.sentAt
            for request in round.requests { answerRead(request) }
            answered += 1
        }
        if answered > 0 { reads.rounds.removeFirst(answered) }
    }

    private mutating func answerRead(_ request: ReadRequest) {
        if request.from == id {
            readStates.append(ReadState(index: request.index, context: request.context))
        } else {
            send(Message(kind: .readIndexResponse, to: request.from, index: request.index, context: request.context))
        }
    }
}
