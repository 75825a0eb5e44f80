import Raft
import RaftSimulation
import Testing

/// Leadership transfer (thesis §3.10).
@Suite struct TransferTests {
    func transfer(_ cluster: Cluster, from leader: NodeID, to target: NodeID) {
        cluster.on(leader) { node in try? node.transferLeadership(to: target) }
    }

    @Test func transferHandsLeadershipToAnUpToDateFollower() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        transfer(cluster, from: 1, to: 3)
        cluster.stabilize()
        #expect(cluster.node(3).role == .leader)
        #expect(cluster.node(1).leader == 3)
        #expect(cluster.oracle.violations.isEmpty)
    }

    @Test func laggingTargetIsCaughtUpFirst() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.crash(3)
        for i in 0..<5 { _ = try cluster.propose(1, "e\(i)") }
        cluster.stabilize()
        try cluster.restart(3)
        transfer(cluster, from: 1, to: 3)
        cluster.tickAll(times: 2)
        #expect(cluster.node(3).role == .leader)
        #expect(cluster.appliedData(3).count == 5)
    }

    @Test func proposalsWaitDuringTransferAndResumeAfterTimeout() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(3)
        transfer(cluster, from: 1, to: 3)
        #expect(throws: ProposalError.leadershipTransferInProgress) { _ = try cluster.propose(1, "x") }
        // Ticking 1 and 2 only: the transfer is abandoned after an election timeout.
        for _ in 0..<11 {
            cluster.tick(1)
            cluster.tick(2)
            cluster.stabilize()
        }
        #expect(cluster.node(1).role == .leader)
        _ = try cluster.propose(1, "x")
    }

    @Test func transferToUnknownMemberIsRefused() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        let refused = cluster.on(1) { node -> Bool in
            (try? node.transferLeadership(to: 9)) == nil
        }
        #expect(refused == true)
    }
}
