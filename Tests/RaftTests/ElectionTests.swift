import Raft
import RaftSimulation
import Testing

/// Leader election (§5.2), pre-vote (thesis §9.6) and check-quorum (§6.2).
@Suite struct ElectionTests {
    @Test func electsOneLeaderWhichReplicatesToAll() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        #expect(cluster.node(1).role == .leader)
        #expect(cluster.node(2).leader == 1 && cluster.node(3).leader == 1)
        _ = try cluster.propose(1, "x")
        cluster.stabilize()
        for id in cluster.ids { #expect(cluster.appliedData(id) == [bytes("x")]) }
        #expect(cluster.oracle.violations.isEmpty)
    }

    @Test func electionTimeoutStartsAnElection() throws {
        let cluster = try Cluster(voters: 3)
        // Only member 2 ticks: it times out within [electionTick, 2*electionTick).
        cluster.tickUntilLeader(2, ticking: [2], rounds: 20)
        #expect(cluster.node(2).role == .leader)
        #expect(cluster.oracle.violations.isEmpty)
    }

    /// Pitfall 5: a member rejoining after a partition must not depose a healthy
    /// leader. With pre-vote its term does not even move while it is cut off.
    @Test func rejoiningMemberDoesNotDisruptLeader() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        let term = cluster.node(1).term
        cluster.isolate(3)
        cluster.tickAll(times: 50)
        #expect(cluster.node(3).term == term, "pre-vote keeps the isolated member's term")
        #expect(cluster.node(3).role != .leader)
        cluster.healAll()
        cluster.tickAll(times: 30)
        #expect(cluster.node(1).role == .leader)
        #expect(cluster.node(1).term == term)
        #expect(cluster.node(3).leader == 1)
    }

    /// Without pre-vote but with check-quorum, members inside their leader lease
    /// ignore a disruptive candidate's higher-term vote request.
    @Test func leaderLeaseIgnoresDisruptiveVoteRequests() throws {
        let cluster = try Cluster(voters: 3) { $0.preVote = false }
        cluster.elect(1)
        let term = cluster.node(1).term
        // Member 3 campaigns on its own (as if its timer fired during a blip).
        cluster.on(3) { $0.campaign() }
        let requests = cluster.take { $0.kind == .vote }
        #expect(requests.count == 2)
        for request in requests { cluster.deliver(request) }
        cluster.stabilize()
        #expect(cluster.node(2).term == term, "member 2 ignored the vote request")
        #expect(cluster.node(2).vote != 3)
    }

    /// Check-quorum: a leader cut off from the majority steps down within an
    /// election timeout instead of accepting writes it can never commit.
    @Test func isolatedLeaderStepsDown() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(1)
        cluster.tick(1, times: 2 * 10 + 1)
        #expect(cluster.node(1).role == .follower)
        #expect(throws: ProposalError.self) { _ = try cluster.propose(1, "lost") }
    }

    @Test func candidateWithStaleLogLoses() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.cut.insert(.init(from: 1, to: 3))
        _ = try cluster.propose(1, "a")
        cluster.stabilize()
        cluster.healAll()
        // 3 lacks the entry 1 and 2 hold: neither votes for it (§5.4.1).
        cluster.crash(1)
        cluster.on(3) { $0.campaign(); }
        cluster.stabilize()
        #expect(cluster.node(3).role != .leader)
        #expect(cluster.oracle.violations.isEmpty)
    }

    @Test func singleVoterElectsItselfAndCommitsAfterPersisting() throws {
        let cluster = try Cluster(voters: 1)
        cluster.elect(1)
        #expect(cluster.node(1).role == .leader)
        _ = try cluster.propose(1, "solo")
        #expect(cluster.appliedData(1) == [bytes("solo")])
    }
}
