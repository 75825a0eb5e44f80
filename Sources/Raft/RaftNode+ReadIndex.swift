// Linearizable reads without writing to the log (thesis §6.4).

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
        if confState.voters == [id] {
            answerRead(request)
        } else if log.term(at: log.committed) != term {
            reads.waitingForCommit.append(request)
        } else if config.readOnly == .leaseBased {
            answerRead(request)
        } else {
            reads.unsent.append(request)
        }
    }

    /// The first commit of the term makes the waiting requests' index current.
    mutating func releaseReadsWaitingForCommit() {
        guard !reads.waitingForCommit.isEmpty, log.term(at: log.committed) == term else { return }
        let waiting = reads.waitingForCommit
        reads.waitingForCommit.removeAll()
        for var request in waiting {
            request.index = log.committed
            if config.readOnly == .leaseBased {
                answerRead(request)
            } else {
                reads.unsent.append(request)
            }
        }
    }

    /// Starts one heartbeat round for every request that arrived since the last one.
    mutating func startReadRound() {
        guard reads.hasUnsent else { return }
        let requests = reads.unsent
        reads.unsent.removeAll()
        let round = reads.nextRound
        reads.nextRound += 1
        reads.rounds.append((round, requests))
        broadcastHeartbeat(context: ReadIndexState.encode(round: round))
    }

    mutating func handleReadAck(from peer: NodeID, context: [UInt8]) {
        guard let round = ReadIndexState.decode(context), confState.isVoter(peer) else { return }
        if round > reads.acked[peer, default: 0] { reads.acked[peer] = round }
        // The highest round a quorum (this leader always included) has acknowledged.
        var acks: [UInt64] = []
        for voter in confState.voters {
            acks.append(voter == id ? UInt64.max : reads.acked[voter, default: 0])
        }
        let confirmed = Quorum.committedIndex(matches: acks)
        while let first = reads.rounds.first, first.number <= confirmed {
            reads.rounds.removeFirst()
            for request in first.requests { answerRead(request) }
        }
    }

    private mutating func answerRead(_ request: ReadRequest) {
        if request.from == id {
            readStates.append(ReadState(index: request.index, context: request.context))
        } else {
            send(Message(kind: .readIndexResponse, to: request.from, index: request.index, context: request.context))
        }
    }
}
