@testable import KV
import Testing

/// etcd 3.4's checks before a membership change (server.go's mayAddMember,
/// mayRemoveMember, mayPromoteMember with `--strict-reconfig-check`, and the
/// directory's own rules), with its numbers.
@Suite struct MemberCheckTests {
    let everyone: Set<UInt64> = Set(1...9)

    /// Voters `started` that have published their names, `unstarted` that have not.
    func table(started: Int, unstarted: Int = 0, learners: [UInt64] = []) -> MemberTable {
        var table = MemberTable()
        for i in 0..<(started + unstarted) {
            let id = UInt64(i + 1)
            let name = i < started ? "m\(id)" : ""
            table.added(id, record: Member(id: id, name: name, peerURLs: ["http://10.0.0.\(id):2380"]), learner: false)
        }
        for id in learners { table.added(id, record: Member(id: id, peerURLs: ["http://10.0.1.\(id):2380"]), learner: true) }
        return table
    }

    @Test func aVoterJoinsOnlyIfTheStartedVotersStillMakeAQuorum() throws {
        try table(started: 3).checkAdd(peerURLs: ["http://10.0.0.9:2380"], isLearner: false, local: 1, healthy: everyone)
        // 3 started of 5: a quorum.
        try table(started: 3, unstarted: 1).checkAdd(peerURLs: ["http://10.0.0.9:2380"], isLearner: false, local: 1, healthy: everyone)
        // 3 started of 6: not.
        #expect(throws: MemberError.notEnoughStartedMembers) {
            try table(started: 3, unstarted: 2).checkAdd(peerURLs: ["http://10.0.0.9:2380"], isLearner: false, local: 1, healthy: everyone)
        }
        // etcd's restore path: a second member joins a one-member cluster.
        try table(started: 1).checkAdd(peerURLs: ["http://10.0.0.9:2380"], isLearner: false, local: 1, healthy: everyone)
        #expect(throws: MemberError.notEnoughStartedMembers) {
            try table(started: 1, unstarted: 1).checkAdd(peerURLs: ["http://10.0.0.9:2380"], isLearner: false, local: 1, healthy: everyone)
        }
        // A learner does not count towards the quorum.
        try table(started: 3, unstarted: 2).checkAdd(peerURLs: ["http://10.0.0.9:2380"], isLearner: true, local: 1, healthy: everyone)
    }

    /// etcd's isConnectedFullySince: the leader must have been in touch with
    /// every voter for its health interval, for a learner too.
    @Test func aMemberJoinsOnlyWhileTheLeaderIsInTouchWithEveryVoter() throws {
        try table(started: 3).checkAdd(peerURLs: ["http://10.0.0.9:2380"], isLearner: false, local: 1, healthy: [2, 3])
        #expect(throws: MemberError.unhealthy) {
            try table(started: 3).checkAdd(peerURLs: ["http://10.0.0.9:2380"], isLearner: false, local: 1, healthy: [2])
        }
        #expect(throws: MemberError.unhealthy) {
            try table(started: 3).checkAdd(peerURLs: ["http://10.0.0.9:2380"], isLearner: true, local: 1, healthy: [2])
        }
        // Learners need not be in touch.
        try table(started: 3, learners: [7]).checkAdd(peerURLs: ["http://10.0.0.9:2380"], isLearner: false, local: 1, healthy: [2, 3])
    }

    @Test func peerURLsAreUniqueAndOneLearnerAtATime() {
        #expect(throws: MemberError.peerURLExists) {
            try table(started: 3).checkAdd(peerURLs: ["http://10.0.0.2:2380"], isLearner: false, local: 1, healthy: everyone)
        }
        #expect(throws: MemberError.tooManyLearners) {
            try table(started: 3, learners: [7]).checkAdd(peerURLs: ["http://10.0.0.9:2380"], isLearner: true, local: 1, healthy: everyone)
        }
    }

    @Test func aVoterGoesOnlyIfTheRestStillMakeAQuorumOfStartedAndReachableMembers() throws {
        let all: Set<UInt64> = [1, 2, 3]
        try table(started: 3).checkRemove(2, local: 1, connected: all, healthy: all)
        // The others: 1 started of 2 — under quorum.
        #expect(throws: MemberError.notEnoughStartedMembers) {
            try table(started: 2, unstarted: 1).checkRemove(2, local: 1, connected: all, healthy: all)
        }
        // Removing the unstarted one leaves 2 started of 2.
        try table(started: 2, unstarted: 1).checkRemove(3, local: 1, connected: all, healthy: all)
        // A member that is down may go: it is not part of the active quorum.
        try table(started: 3).checkRemove(3, local: 1, connected: [2], healthy: [2])
        // With member 3 down, removing 2 would leave 1 reachable of 2.
        #expect(throws: MemberError.unhealthy) {
            try table(started: 3).checkRemove(2, local: 1, connected: [2], healthy: [2])
        }
        // Member 3 is back but not yet for the health interval: the same.
        #expect(throws: MemberError.unhealthy) {
            try table(started: 3).checkRemove(2, local: 1, connected: [2, 3], healthy: [2])
        }
        // The last member cannot go.
        #expect(throws: MemberError.notEnoughStartedMembers) {
            try table(started: 1).checkRemove(1, local: 1, connected: [], healthy: [])
        }
        // A learner always may; an unknown id is "member not found".
        try table(started: 1, unstarted: 2, learners: [7]).checkRemove(7, local: 1, connected: [], healthy: [])
        #expect(throws: MemberError.notFound) { try table(started: 3).checkRemove(42, local: 1, connected: all, healthy: all) }
    }

    @Test func aLearnerIsPromotedOnlyIfTheStartedVotersAndItMakeAQuorum() throws {
        try table(started: 3, learners: [7]).checkPromote(7)
        // 2 started + the learner of 5: a quorum; 1 + the learner of 4: not.
        try table(started: 2, unstarted: 2, learners: [7]).checkPromote(7)
        #expect(throws: MemberError.notEnoughStartedMembers) {
            try table(started: 1, unstarted: 2, learners: [7]).checkPromote(7)
        }
        #expect(throws: MemberError.notLearner) { try table(started: 3).checkPromote(2) }
        #expect(throws: MemberError.notFound) { try table(started: 3).checkPromote(9) }
        // The strict check comes first, as in etcd.
        #expect(throws: MemberError.notEnoughStartedMembers) { try table(started: 1, unstarted: 2).checkPromote(9) }
    }
}
