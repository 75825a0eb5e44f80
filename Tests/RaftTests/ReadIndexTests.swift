import Raft
import RaftSimulation
import Testing

/// Linearizable reads through ReadIndex (thesis §6.4).
@Suite struct ReadIndexTests {
    func read(_ cluster: Cluster, on id: NodeID, _ context: String) {
        cluster.on(id) { node in try? node.readIndex(context: bytes(context)) }
    }

    @Test func leaderAnswersAfterAQuorumRound() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        let (index, _) = try cluster.propose(1, "w")
        cluster.stabilize()
        read(cluster, on: 1, "r1")
        #expect(cluster.readStates[1, default: []].isEmpty, "must wait for the heartbeat round")
        cluster.stabilize()
        let state = try #require(cluster.readStates[1]?.last)
        #expect(state.context == bytes("r1"))
        #expect(state.index >= index)
    }

    /// Many reads share one heartbeat round.
    @Test func readsAreBatchedIntoOneRound() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        let before = cluster.sent.count
        cluster.on(1) { node in
            for i in 0..<20 { try? node.readIndex(context: bytes("r\(i)")) }
        }
        cluster.stabilize()
        let rounds = cluster.sent[before...].filter { $0.kind == .heartbeat && !$0.context.isEmpty }
        #expect(rounds.count == 2, "one heartbeat per follower, got \(rounds.count)")
        #expect(cluster.readStates[1]?.count == 20)
    }

    @Test func followerReadsThroughTheLeader() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        let (index, _) = try cluster.propose(1, "w")
        cluster.stabilize()
        read(cluster, on: 3, "f")
        cluster.stabilize()
        let state = try #require(cluster.readStates[3]?.last)
        #expect(state.index >= index && state.context == bytes("f"))
    }

    /// Pitfall 6 and the deposed-leader case: a leader cut off from the majority
    /// never answers a read, so it cannot serve data older than a write the new
    /// leader has acknowledged.
    @Test func deposedLeaderServesNoStaleRead() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(1)
        let leader = try #require(cluster.tickUntilAnyLeader(among: [2, 3]))
        let (written, _) = try cluster.propose(leader, "new")
        cluster.stabilize()
        // Node 1 still believes it leads (no ticks yet): the read must not complete.
        #expect(cluster.node(1).role == .leader)
        read(cluster, on: 1, "stale?")
        cluster.stabilize()
        #expect(cluster.readStates[1, default: []].isEmpty)
        cluster.healAll()
        cluster.tickAll(times: 5)
        for state in cluster.readStates[1, default: []] {
            #expect(state.index >= written, "stale read at \(state.index)")
        }
    }

    /// A new leader waits for its first commit before answering (§6.4: its commit
    /// index may be stale until then).
    @Test func newLeaderWaitsForItsFirstCommit() throws {
        let cluster = try Cluster(voters: 3)
        cluster.on(1) { $0.campaign() }
        cluster.dropIf = { $0.kind == .append }
        cluster.stabilize()
        #expect(cluster.node(1).role == .leader)
        read(cluster, on: 1, "early")
        cluster.stabilize()
        #expect(cluster.readStates[1, default: []].isEmpty)
        cluster.dropIf = nil
        cluster.tickAll(times: 2)
        let state = try #require(cluster.readStates[1]?.last)
        #expect(state.index >= cluster.node(1).commitIndex - 1)
        #expect(cluster.node(1).term(at: state.index) == cluster.node(1).term)
    }

    @Test func readWithoutLeaderFails() throws {
        let cluster = try Cluster(voters: 3)
        let failed = cluster.on(2) { node -> Bool in
            (try? node.readIndex(context: [1])) == nil
        }
        #expect(failed == true)
    }
}
