import Raft
import RaftSimulation
import Testing

/// The Ready contract (pitfall 1: persist before replying).
@Suite struct ReadyContractTests {
    func makeNode(_ id: NodeID, voters: [NodeID]) throws -> (RaftNode<MemoryStorage>, MemoryStorage) {
        let storage = MemoryStorage()
        let boot = RaftNode<MemoryStorage>.bootstrap(voters: voters)
        storage.append(boot.entries)
        storage.setHardState(boot.hardState)
        return (try RaftNode(config: RaftConfig(id: id), storage: storage), storage)
    }

    func drain(_ node: inout RaftNode<MemoryStorage>, _ storage: MemoryStorage) {
        while node.hasReady {
            let ready = node.ready()
            storage.append(ready.entries)
            if let hs = ready.hardState { storage.setHardState(hs) }
            node.advance(ready)
        }
    }

    /// A single member counts its own entry only once the driver says it is
    /// durable: the entry is not committed in the Ready that asks to persist it.
    @Test func leaderCountsItselfOnlyAfterPersisting() throws {
        var (node, storage) = try makeNode(1, voters: [1])
        drain(&node, storage)  // applies the bootstrap configuration
        node.campaign()
        drain(&node, storage)
        let (index, _) = try node.propose(bytes("w"))
        let ready = node.ready()
        #expect(ready.entries.last?.index == index)
        #expect(!ready.committedEntries.contains { $0.index == index }, "committed before it was persisted")
        storage.append(ready.entries)
        node.advance(ready)
        let next = node.ready()
        #expect(next.committedEntries.last?.index == index)
        #expect(next.hardState?.commit == index)
    }

    /// A vote and an append acknowledgement promise persisted state, so they go
    /// out only after the write; a leader's appends may go out before its own.
    @Test func acknowledgementsWaitForPersistence() throws {
        var config = RaftConfig(id: 2)
        config.preVote = false
        let storage = MemoryStorage()
        let boot = RaftNode<MemoryStorage>.bootstrap(voters: [1, 2])
        storage.append(boot.entries)
        storage.setHardState(boot.hardState)
        var follower = try RaftNode(config: config, storage: storage)
        drain(&follower, storage)

        follower.step(Message(kind: .vote, from: 1, to: 2, term: 2, logTerm: 1, index: 2))
        var ready = follower.ready()
        #expect(ready.hardState?.vote == 1)
        #expect(ready.messages.isEmpty, "a vote must not leave before the vote is durable")
        #expect(ready.messagesAfterPersist.map(\.kind) == [.voteResponse])
        storage.setHardState(ready.hardState ?? .empty)
        follower.advance(ready)

        let entry = Entry(term: 2, index: 3, data: bytes("x"))
        follower.step(Message(kind: .append, from: 1, to: 2, term: 2, logTerm: 1, index: 2, entries: [entry], commit: 2))
        ready = follower.ready()
        #expect(ready.entries == [entry])
        #expect(ready.messages.isEmpty, "an acknowledgement must not leave before the entry is durable")
        #expect(ready.messagesAfterPersist.contains { $0.kind == .appendResponse && !$0.reject && $0.index == 3 })
    }

    @Test func leaderAppendsMayLeaveBeforeItsOwnWrite() throws {
        var config = RaftConfig(id: 1)
        config.preVote = false
        let storage = MemoryStorage()
        let boot = RaftNode<MemoryStorage>.bootstrap(voters: [1, 2])
        storage.append(boot.entries)
        storage.setHardState(boot.hardState)
        var leader = try RaftNode(config: config, storage: storage)
        drain(&leader, storage)
        leader.campaign()
        drain(&leader, storage)
        leader.step(Message(kind: .voteResponse, from: 2, to: 1, term: leader.term))
        #expect(leader.role == .leader)
        let ready = leader.ready()
        #expect(ready.entries.count == 1, "the no-op of the new term")
        #expect(ready.messages.contains { $0.kind == .append && $0.to == 2 })
        #expect(ready.committedEntries.isEmpty)
    }

    /// Pitfall 7 (etcd #17780): the commit index never goes back across a
    /// process crash: a hard state that only moves it is not synced, but it is
    /// written before anything is applied.
    @Test func commitIndexSurvivesRestart() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        for i in 0..<5 { _ = try cluster.propose(1, "v\(i)") }
        cluster.stabilize()
        let before = cluster.node(2).commitIndex
        let applied = cluster.members[2]?.stateMachine.appliedIndex ?? 0
        cluster.crash(2)
        try cluster.restart(2)
        #expect(cluster.node(2).commitIndex >= before)
        #expect(cluster.node(2).commitIndex >= applied)
        cluster.stabilize()
        #expect(cluster.oracle.violations.isEmpty)
    }

    /// Only entries, snapshots and a new term or vote are synced before the
    /// rest of a Ready (etcd-io/raft's MustSync); a commit-only hard state is
    /// not, so a lone writer pays one fdatasync per write, not two.
    @Test func onlyCommitMovingNeedsNoSync() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        let before = cluster.persisted.count
        _ = try cluster.propose(1, "v")
        cluster.stabilize()
        let readies = cluster.persisted.dropFirst(before).map(\.ready)
        let commitOnly = readies.filter { $0.hardState != nil && $0.entries.isEmpty && $0.snapshot == nil }
        #expect(!commitOnly.isEmpty)
        #expect(commitOnly.allSatisfy { !$0.mustSync })
        #expect(readies.filter { !$0.entries.isEmpty }.allSatisfy { $0.mustSync })
    }

    /// After a power loss the commit index may be older than before (the
    /// unsynced record is gone): the member applies less at first and learns
    /// the rest from the leader; every entry it applied is still in its log,
    /// and it applies the same entries again, with the same terms.
    @Test func commitLostInPowerLossIsLearnedAgain() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        for i in 0..<5 { _ = try cluster.propose(1, "v\(i)") }
        cluster.stabilize()
        let applied = cluster.members[2]?.stateMachine.appliedIndex ?? 0
        let lastIndex = cluster.node(2).lastIndex
        cluster.powerLoss(2)
        try cluster.restart(2)
        #expect(cluster.node(2).lastIndex == lastIndex, "entries are synced when appended")
        #expect(cluster.node(2).commitIndex < applied, "the last commit-only hard state was not synced")
        cluster.tick(1, times: 5)  // the leader's heartbeat carries its commit index
        cluster.stabilize()
        #expect(cluster.node(2).commitIndex >= applied)
        #expect((cluster.members[2]?.stateMachine.appliedIndex ?? 0) >= applied)
        #expect(cluster.oracle.violations.isEmpty)
    }

    /// A commit index that commits a membership change is synced even when
    /// nothing else changed. Otherwise (review finding): a cluster shrunk to
    /// its leader alone, the leader loses power before the next write, comes
    /// back in the old two-member configuration and can never be elected — the
    /// removed member applied its removal and is gone.
    @Test func aCommitThatPassesAMembershipChangeIsSynced() throws {
        let cluster = try Cluster(voters: 2)
        cluster.elect(1)
        cluster.tickAll(times: 2)
        let before = cluster.persisted.count
        try #require(cluster.on(1) { node -> Bool in (try? node.proposeConfChange(ConfChange(.remove, node: 2))) != nil } == true)
        cluster.stabilize()
        #expect(cluster.node(1).confState.voters == [1])
        let change = cluster.node(1).commitIndex
        // The leader's Ready that committed the removal had no entries, yet synced.
        let committing = cluster.persisted.dropFirst(before).filter { $0.member == 1 && $0.ready.entries.isEmpty }
            .map(\.ready).filter { ($0.hardState?.commit ?? 0) >= change }
        #expect(!committing.isEmpty && committing.allSatisfy { $0.mustSync })
        cluster.crash(2)  // removed: it stops for good
        cluster.powerLoss(1)
        try cluster.restart(1)
        #expect(cluster.node(1).commitIndex >= change)
        cluster.tick(1, times: 30)
        #expect(cluster.node(1).role == .leader, "the lone voter elects itself")
        #expect(cluster.oracle.violations.isEmpty)
    }

    @Test func invalidConfigIsRejected() {
        var config = RaftConfig(id: 1)
        config.electionTick = 1
        #expect(throws: RaftError.self) { _ = try RaftNode(config: config, storage: MemoryStorage()) }
        #expect(throws: RaftError.self) { _ = try RaftNode(config: RaftConfig(id: 0), storage: MemoryStorage()) }
    }
}
