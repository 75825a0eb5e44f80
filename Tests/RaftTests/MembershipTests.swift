import Raft
import RaftSimulation
import Testing

/// Single-server membership changes (thesis §4.1) with learners, and the fix for
/// the single-server change bug (pitfall 4).
@Suite struct MembershipTests {
    func proposeChange(_ cluster: Cluster, _ leader: NodeID, _ change: ConfChange) -> ProposalError? {
        cluster.on(leader) { node -> ProposalError? in
            do {
                try node.proposeConfChange(change)
                return nil
            } catch {
                return error as? ProposalError
            }
        } ?? .notLeader(leader: .none)
    }

    /// Pitfall 4: no configuration entry before the leader has committed an
    /// entry of its own term, and only one change in flight.
    @Test func changesWaitForACurrentTermCommitAndGoOneAtATime() throws {
        let cluster = try Cluster(voters: 3)
        cluster.on(1) { $0.campaign() }
        // Deliver the votes but not the no-op's replication yet.
        cluster.dropIf = { $0.kind == .append }
        cluster.stabilize()
        #expect(cluster.node(1).role == .leader)
        #expect(proposeChange(cluster, 1, ConfChange(.addLearner, node: 4)) == .leaderNotReady)
        cluster.dropIf = nil
        cluster.tickAll(times: 2)
        try cluster.addEmptyMember(4)
        #expect(proposeChange(cluster, 1, ConfChange(.addLearner, node: 4)) == nil)
        #expect(proposeChange(cluster, 1, ConfChange(.addLearner, node: 5)) == .confChangeInProgress)
        cluster.stabilize()
        #expect(cluster.node(1).confState.learners == [4])
        #expect(proposeChange(cluster, 1, ConfChange(.remove, node: 4)) == nil)
    }

    @Test func learnerCatchesUpWithoutVotingThenIsPromoted() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        for i in 0..<10 { _ = try cluster.propose(1, "e\(i)") }
        cluster.stabilize()
        try cluster.addEmptyMember(4)
        #expect(proposeChange(cluster, 1, ConfChange(.addLearner, node: 4)) == nil)
        cluster.tickAll(times: 3)
        #expect(cluster.appliedData(4).count == 10, "the learner replicated the log")
        #expect(cluster.node(4).confState.learners == [4])
        // A learner never campaigns.
        cluster.tick(4, times: 50)
        #expect(cluster.node(4).role == .follower)
        // Its acknowledgement does not count toward commitment: with two voters
        // cut off, nothing commits even though the learner has the entry.
        cluster.cut = [.init(from: 2, to: 1), .init(from: 3, to: 1)]
        let (index, _) = try cluster.propose(1, "needs a voter")
        cluster.stabilize()
        #expect(cluster.node(1).commitIndex < index)
        cluster.healAll()
        cluster.tickAll(times: 2)
        #expect(cluster.node(1).commitIndex >= index)
        #expect(proposeChange(cluster, 1, ConfChange(.addVoter, node: 4)) == nil)
        cluster.tickAll(times: 2)
        #expect(cluster.node(1).confState.voters == [1, 2, 3, 4])
        #expect(cluster.node(4).confState.voters == [1, 2, 3, 4])
        #expect(cluster.oracle.violations.isEmpty)
    }

    @Test func removedLeaderStepsDownAndTheRestElectANewOne() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        #expect(proposeChange(cluster, 1, ConfChange(.remove, node: 1)) == nil)
        cluster.stabilize()
        cluster.tickAll(times: 2)
        #expect(cluster.node(1).role == .follower)
        let leader = try #require(cluster.tickUntilAnyLeader(among: [2, 3]))
        #expect(cluster.node(leader).confState.voters == [2, 3])
        _ = try cluster.propose(leader, "after removal")
        cluster.stabilize()
        #expect(cluster.appliedData(2).last == bytes("after removal"))
        #expect(cluster.oracle.violations.isEmpty)
    }

    @Test func invalidChangesAreRefused() throws {
        let cluster = try Cluster(voters: 1)
        cluster.elect(1)
        #expect(proposeChange(cluster, 1, ConfChange(.remove, node: 1)) == .invalidConfChange(.noVotersLeft))
        #expect(proposeChange(cluster, 1, ConfChange(.addVoter, node: 0)) == .invalidConfChange(.invalidNode))
        #expect(proposeChange(cluster, 2, ConfChange(.addVoter, node: 3)) != nil)
        #expect(proposeChange(cluster, 1, ConfChange(.remove, node: 7)) == .invalidConfChange(.notMember))
        #expect(proposeChange(cluster, 1, ConfChange(.promote, node: 1)) == .invalidConfChange(.notLearner))
        #expect(proposeChange(cluster, 1, ConfChange(.promote, node: 7)) == .invalidConfChange(.notLearner))
    }

    /// A promotion committed after the learner's removal (each proposed
    /// while the other was not yet applied on the proposer) is ignored when
    /// applied: it must not add a voter that no process runs. A removal of a
    /// node already gone is ignored the same way.
    @Test func aPromotionOrRemovalOfANodeNoLongerThereIsIgnoredWhenApplied() throws {
        let base = ConfState(voters: [1, 2, 3], learners: [4])
        let removed = try base.applying(ConfChange(.remove, node: 4))
        #expect(throws: ConfChangeError.notLearner) { try removed.applying(ConfChange(.promote, node: 4)) }
        #expect(throws: ConfChangeError.notMember) { try removed.applying(ConfChange(.remove, node: 4)) }
        #expect(try base.applying(ConfChange(.promote, node: 4)) == ConfState(voters: [1, 2, 3, 4], learners: []))
        // The log form of a promotion.
        let promote = ConfChange(.promote, node: 4)
        #expect(ConfChange(decoding: promote.encoded()) == promote)
    }

    @Test func confChangeEncodingRoundTrips() {
        let change = ConfChange(.addLearner, node: 0xDEAD_BEEF_0102, context: [1, 2, 3])
        #expect(ConfChange(decoding: change.encoded()) == change)
        #expect(ConfChange(decoding: [9, 0, 0]) == nil)
    }
}
