// Message dispatch: the term rules of Figure 2 ("if RPC request or response
// contains term T > currentTerm: set currentTerm = T, convert to follower"),
// vote granting, then one step function per role.

extension RaftNode {
    /// Feeds a message from a peer. Messages for another member, from an older
    /// term, or that make no sense in the current role are dropped.
    public mutating func step(_ message: Message) {
        guard message.to == id || message.to == .none else { return }
        if message.term > term {
            if message.kind == .vote || message.kind == .preVote {
                let forced = message.context == Message.transferContext
                let inLease =
                    config.checkQuorum
                    && ((leader != .none && electionElapsed < config.electionTick) || restartLeaseTicks > 0)
                // Leader stickiness: while we hear from a leader, a disruptive
                // candidate (say, a member rejoining after a partition) is ignored.
                if inLease && !forced { return }
            }
            switch message.kind {
            case .preVote:
                break  // A pre-vote never changes our term.
            case .preVoteResponse where !message.reject:
                break  // The term granted is the one we will campaign in.
            case .append, .heartbeat, .snapshot:
                becomeFollower(term: message.term, leader: message.from)
            default:
                becomeFollower(term: message.term, leader: .none)
            }
        } else if message.term < term {
            if (config.checkQuorum || config.preVote) && (message.kind == .append || message.kind == .heartbeat) {
                // A stale leader learns our term and steps down; without this a
                // member whose term rose while partitioned could never rejoin
                // (its pre-votes fail while the old leader keeps its lower term).
                send(Message(kind: .appendResponse, to: message.from))
            } else if message.kind == .preVote {
                send(Message(kind: .preVoteResponse, to: message.from, reject: true))
            }
            return
        }

        switch message.kind {
        case .vote, .preVote:
            handleVoteRequest(message)
        case .voteResponse, .preVoteResponse:
            learnCommit(fromVoter: message)
            if role == .candidate || role == .preCandidate { stepCandidate(message) }
        case .proposeResponse:
            // Whatever our role now: an accepted batch may still commit.
            forwarded.append(
                ForwardedProposals(
                    context: message.context, index: message.reject ? nil : message.index, term: message.logTerm,
                    outcomeUnknown: message.reject && message.rejectHint == 1,
                    handingOver: message.reject && message.rejectHint == 2))
        default:
            switch role {
            case .leader: stepLeader(message)
            case .candidate, .preCandidate: stepCandidate(message)
            case .follower: stepFollower(message)
            }
        }
    }

    /// RequestVote receiver rules (Figure 2, §5.4.1).
    private mutating func handleVoteRequest(_ message: Message) {
        let canVote =
            vote == message.from
            || (vote == .none && leader == .none)
            || (message.kind == .preVote && message.term > term)
            || config.brokenRules.contains(.grantEveryVote)
        let responseKind: MessageKind = message.kind == .vote ? .voteResponse : .preVoteResponse
        // Every answer carries our commit index and its term (see learnCommit).
        let commit = log.committed
        let commitTerm = log.term(at: commit) ?? 0
        if canVote && log.isUpToDate(index: message.index, term: message.logTerm) {
            // A granted pre-vote answers in the term it was asked for.
            send(Message(kind: responseKind, to: message.from, term: message.term, logTerm: commitTerm, commit: commit))
            if message.kind == .vote {
                electionElapsed = 0
                vote = message.from
            }
        } else {
            send(Message(kind: responseKind, to: message.from, term: term, logTerm: commitTerm, commit: commit, reject: true))
        }
    }

    /// A voter's answer says which index it knows committed, with that entry's
    /// term. If our log holds the same entry, Log Matching (§5.3) makes our whole
    /// prefix up to it identical to the voter's, so it is committed here too.
    /// This extension unblocks a candidate that does not know a membership change
    /// committed while the only member that knows it cannot lead (say, a leader
    /// that removed itself and then lost its quorum, seed 20286): applying the
    /// change gives the candidate the configuration it can win in.
    private mutating func learnCommit(fromVoter message: Message) {
        guard role != .leader, message.commit > log.committed, message.commit <= log.lastIndex,
            log.matchTerm(message.commit, message.logTerm)
        else { return }
        log.commitTo(message.commit)
    }

    private mutating func stepCandidate(_ message: Message) {
        switch message.kind {
        case .append:
            becomeFollower(term: message.term, leader: message.from)
            handleAppend(message)
        case .heartbeat:
            becomeFollower(term: message.term, leader: message.from)
            handleHeartbeat(message)
        case .snapshot:
            becomeFollower(term: message.term, leader: message.from)
            handleSnapshot(message)
        case .propose:
            refuseForwarded(message)
        case .preVoteResponse where role == .preCandidate, .voteResponse where role == .candidate:
            switch recordVote(from: message.from, granted: !message.reject) {
            case .won:
                if role == .preCandidate { campaign(.election) } else { becomeLeader() }
            case .lost:
                becomeFollower(term: term, leader: .none)
            case .pending:
                break
            }
        default:
            break
        }
    }

    private mutating func stepFollower(_ message: Message) {
        switch message.kind {
        case .append:
            electionElapsed = 0
            leader = message.from
            handleAppend(message)
        case .heartbeat:
            electionElapsed = 0
            leader = message.from
            handleHeartbeat(message)
        case .snapshot:
            electionElapsed = 0
            leader = message.from
            handleSnapshot(message)
        case .timeoutNow:
            // Leader transfer (thesis §3.10): campaign at once, skipping pre-vote
            // — or once a committed membership change has applied.
            if hasUnappliedConfChanges() {
                // Applying takes a cycle or so; kept only briefly (and not
                // renewed by the leader's resends), so it cannot outlive the
                // leader's own patience with the transfer.
                if deferredTransfer?.term != term { deferredTransfer = (term, max(2, config.heartbeatTick)) }
            } else {
                campaign(.transfer)
            }
        case .readIndexResponse:
            readStates.append(ReadState(index: message.index, context: message.context))
        case .propose:
            // The sender thinks we lead: refuse, so it does not wait in vain.
            refuseForwarded(message)
        default:
            break
        }
    }

    /// Refuses a forwarded batch this member does not take. Certain only if
    /// it cannot have led this term: a member that did (its vote is its own)
    /// may have appended an earlier copy of the same message.
    private mutating func refuseForwarded(_ message: Message) {
        let mayHaveLed = vote == id
        send(Message(kind: .proposeResponse, to: message.from, reject: true, rejectHint: mayHaveLed ? 1 : 0, context: message.context))
    }

    private mutating func stepLeader(_ message: Message) {
        guard progress[message.from] != nil else {
            // Not a member this leader replicates to (removed, or not yet
            // added): refuse — certainly not taken, unless an earlier copy was
            // taken this term before the sender was removed (then unknown).
            if message.kind == .propose {
                let unknown = forwardedBatches.mayHaveTaken(message.context, from: message.from)
                send(Message(kind: .proposeResponse, to: message.from, reject: true, rejectHint: unknown ? 1 : 0, context: message.context))
            }
            return
        }
        switch message.kind {
        case .appendResponse:
            handleAppendResponse(message)
        case .heartbeatResponse:
            handleHeartbeatResponse(message)
        case .readIndex:
            handleReadIndex(from: message.from, context: message.context)
        case .propose:
            handleForwardedProposals(message)
        default:
            break
        }
    }
}
