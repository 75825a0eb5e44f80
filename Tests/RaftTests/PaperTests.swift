import Raft
import RaftSimulation
import Testing

/// One test per rule of the Raft paper's Figure 2, driving a single node by hand
/// (in the spirit of etcd-io/raft's raft_paper_test.go).
@Suite struct PaperTests {
    /// A member of a cluster `voters`, bootstrapped and with its configuration
    /// applied; pre-vote and check-quorum off, as in the paper.
    func member(_ id: NodeID, of voters: [NodeID] = [1, 2, 3]) throws -> (RaftNode<MemoryStorage>, MemoryStorage) {
        var config = RaftConfig(id: id)
        config.preVote = false
        config.checkQuorum = false
        let storage = MemoryStorage()
        let boot = RaftNode<MemoryStorage>.bootstrap(voters: voters)
        storage.append(boot.entries)
        storage.setHardState(boot.hardState)
        var node = try RaftNode(config: config, storage: storage)
        persist(&node, storage)
        return (node, storage)
    }

    /// Does what each Ready asks (no network) and returns the messages sent.
    @discardableResult
    func persist(_ node: inout RaftNode<MemoryStorage>, _ storage: MemoryStorage) -> [Message] {
        var sent: [Message] = []
        while node.hasReady {
            let ready = node.ready()
            if let snapshot = ready.snapshot { storage.applySnapshot(snapshot) }
            storage.append(ready.entries)
            if let hs = ready.hardState { storage.setHardState(hs) }
            sent += ready.messages + ready.messagesAfterPersist
            node.advance(ready)
        }
        return sent
    }

    /// "If RPC request or response contains term T > currentTerm: set currentTerm
    /// = T, convert to follower."
    @Test func higherTermConvertsToFollower() throws {
        var (node, storage) = try member(1)
        node.campaign()
        persist(&node, storage)
        node.step(Message(kind: .voteResponse, from: 2, to: 1, term: node.term))
        #expect(node.role == .leader)
        node.step(Message(kind: .appendResponse, from: 3, to: 1, term: node.term + 5))
        #expect(node.role == .follower)
        #expect(node.term == 7)
    }

    /// AppendEntries 1: "Reply false if term < currentTerm" — and with our
    /// extensions the stale leader is told the newer term.
    @Test func appendFromOlderTermIsRefused() throws {
        var (node, storage) = try member(2)
        node.step(Message(kind: .heartbeat, from: 1, to: 2, term: 5))
        persist(&node, storage)
        node.step(Message(kind: .append, from: 3, to: 2, term: 4, logTerm: 1, index: 3,
                          entries: [Entry(term: 4, index: 4)], commit: 3))
        #expect(node.lastIndex == 3, "nothing appended from a stale leader")
        #expect(node.leader == 1)
    }

    /// AppendEntries 2: "Reply false if log doesn't contain an entry at prevLogIndex
    /// whose term matches prevLogTerm."
    @Test func mismatchedPrevLogIsRejectedWithAHint() throws {
        var (node, storage) = try member(2)
        node.step(Message(kind: .append, from: 1, to: 2, term: 2, logTerm: 2, index: 9,
                          entries: [Entry(term: 2, index: 10)], commit: 3))
        let sent = persist(&node, storage)
        let reply = try #require(sent.first { $0.kind == .appendResponse })
        #expect(reply.reject)
        #expect(reply.rejectHint == 3, "our last index, so the leader can jump back")
        #expect(node.lastIndex == 3)
    }

    /// AppendEntries 3 and 4: "If an existing entry conflicts with a new one (same
    /// index but different terms), delete the existing entry and all that follow
    /// it. Append any new entries not already in the log."
    @Test func conflictingSuffixIsReplaced() throws {
        var (node, storage) = try member(2)
        node.step(Message(kind: .append, from: 1, to: 2, term: 2, logTerm: 1, index: 3,
                          entries: [Entry(term: 2, index: 4), Entry(term: 2, index: 5), Entry(term: 2, index: 6)], commit: 3))
        persist(&node, storage)
        #expect(node.lastIndex == 6)
        node.step(Message(kind: .append, from: 3, to: 2, term: 3, logTerm: 2, index: 4,
                          entries: [Entry(term: 3, index: 5)], commit: 3))
        persist(&node, storage)
        #expect(node.lastIndex == 5)
        #expect(node.term(at: 5) == 3)
        #expect(node.term(at: 4) == 2, "the matching prefix stays")
    }

    /// AppendEntries 5: "If leaderCommit > commitIndex, set commitIndex =
    /// min(leaderCommit, index of last new entry)."
    @Test func commitIsBoundedByTheLastNewEntry() throws {
        var (node, storage) = try member(2)
        node.step(Message(kind: .append, from: 1, to: 2, term: 2, logTerm: 1, index: 3,
                          entries: [Entry(term: 2, index: 4)], commit: 50))
        persist(&node, storage)
        #expect(node.commitIndex == 4)
    }

    /// RequestVote 2: "If votedFor is null or candidateId, and candidate's log is
    /// at least as up-to-date as receiver's log, grant vote" — one vote per term.
    @Test func oneVotePerTerm() throws {
        var (node, storage) = try member(3)
        node.step(Message(kind: .vote, from: 1, to: 3, term: 2, logTerm: 1, index: 3))
        var sent = persist(&node, storage)
        #expect(sent.contains { $0.kind == .voteResponse && !$0.reject && $0.to == 1 })
        node.step(Message(kind: .vote, from: 2, to: 3, term: 2, logTerm: 1, index: 3))
        sent = persist(&node, storage)
        #expect(sent.contains { $0.kind == .voteResponse && $0.reject && $0.to == 2 })
        // The same candidate asking again gets the same answer.
        node.step(Message(kind: .vote, from: 1, to: 3, term: 2, logTerm: 1, index: 3))
        sent = persist(&node, storage)
        #expect(sent.contains { $0.kind == .voteResponse && !$0.reject && $0.to == 1 })
    }

    /// §5.4.1: a candidate whose log is less up to date is refused.
    @Test func staleCandidateIsRefused() throws {
        var (node, storage) = try member(3)
        node.step(Message(kind: .append, from: 1, to: 3, term: 2, logTerm: 1, index: 3,
                          entries: [Entry(term: 2, index: 4)], commit: 3))
        persist(&node, storage)
        node.step(Message(kind: .vote, from: 2, to: 3, term: 3, logTerm: 1, index: 9))
        let sent = persist(&node, storage)
        #expect(sent.contains { $0.kind == .voteResponse && $0.reject })
    }

    /// Followers: "If election timeout elapses without receiving AppendEntries RPC
    /// from current leader or granting vote to candidate: convert to candidate."
    /// Candidates: "On conversion to candidate, start election: increment
    /// currentTerm, vote for self, send RequestVote RPCs to all other servers."
    @Test func electionTimeoutStartsAnElection() throws {
        var (node, storage) = try member(1)
        let term = node.term
        for _ in 0..<20 { node.tick() }
        #expect(node.role == .candidate)
        #expect(node.term == term + 1)
        #expect(node.vote == 1)
        let sent = persist(&node, storage)
        #expect(Set(sent.filter { $0.kind == .vote }.map(\.to)) == [2, 3])
    }

    /// Leaders: "Upon election: send initial empty AppendEntries RPCs (heartbeat)
    /// to each server" — here an AppendEntries carrying the new term's no-op (§8).
    @Test func newLeaderAnnouncesItself() throws {
        var (node, storage) = try member(1)
        node.campaign()
        persist(&node, storage)
        node.step(Message(kind: .voteResponse, from: 3, to: 1, term: node.term))
        let sent = persist(&node, storage)
        #expect(Set(sent.filter { $0.kind == .append }.map(\.to)) == [2, 3])
        #expect(node.term(at: node.lastIndex) == node.term, "a no-op of the new term")
    }

    /// Leaders: "If there exists an N such that N > commitIndex, a majority of
    /// matchIndex[i] ≥ N, and log[N].term == currentTerm: set commitIndex = N."
    @Test func leaderCommitsOnMajorityMatch() throws {
        var (node, storage) = try member(1)
        node.campaign()
        persist(&node, storage)
        node.step(Message(kind: .voteResponse, from: 2, to: 1, term: node.term))
        persist(&node, storage)
        let (index, _) = try node.propose(bytes("x"))
        persist(&node, storage)
        #expect(node.commitIndex < index, "only the leader holds it")
        node.step(Message(kind: .appendResponse, from: 2, to: 1, term: node.term, index: index))
        persist(&node, storage)
        #expect(node.commitIndex == index)
    }
}
