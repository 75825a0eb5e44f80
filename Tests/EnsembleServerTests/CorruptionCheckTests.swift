@testable import EnsembleServer
import Foundation
@testable import KV
import Raft
import Synchronization
import Testing

/// The leader's periodic corruption check (`--experimental-corrupt-check-time`):
/// etcd 3.4's rules, and a cluster in which one member's history silently
/// diverges (as a software bug would make it) raising CORRUPT, which stops
/// writes, while a healthy cluster under writes raises nothing.
@Suite(.serialized, .timeLimit(.minutes(2))) struct CorruptionCheckTests {
    typealias Report = CorruptionCheck.Report

    @Test func theVerdictFollowsEtcdsRules() {
        let leader = Report(member: 1, hash: 7, revision: 100, compactRevision: 40)
        let same = { (member: UInt64) in Report(member: member, hash: 7, revision: 100, compactRevision: 40) }
        #expect(CorruptionCheck.verdict(leader: leader, after: leader, peers: [same(2), same(3)]) == nil)
        // A peer that applied less, or compacted differently, cannot be compared.
        var behind = same(2)
        behind.compactRevision = 30
        behind.hash = 9
        #expect(CorruptionCheck.verdict(leader: leader, after: leader, peers: [behind]) == nil)
        // A different hash at the same compaction revision convicts the peer.
        var differs = same(3)
        differs.hash = 8
        #expect(CorruptionCheck.verdict(leader: leader, after: leader, peers: [same(2), differs])?.member == 3)
        // A peer ahead of the leader's revision or compaction is corrupt.
        var ahead = same(2)
        ahead.revision = 101
        #expect(CorruptionCheck.verdict(leader: leader, after: leader, peers: [ahead])?.member == 2)
        var compactedAhead = same(2)
        compactedAhead.compactRevision = 41
        compactedAhead.hash = 1
        #expect(CorruptionCheck.verdict(leader: leader, after: leader, peers: [compactedAhead])?.member == 2)
        // The leader moved on meanwhile: its later revision bounds the peers.
        var later = leader
        later.revision = 105
        later.hash = 11
        ahead.revision = 104
        #expect(CorruptionCheck.verdict(leader: leader, after: later, peers: [ahead]) == nil)
        // Its own hash changed with nothing written: the leader itself.
        var changed = leader
        changed.hash = 12
        #expect(CorruptionCheck.verdict(leader: leader, after: changed, peers: [same(2)])?.member == 1)
    }

    @Test func theInitialCheckFindsAMemberUnlikeItsPeers() async throws {
        let f = try await DevClusterFixture()
        for i in 0..<5 { _ = try await f.run(f.leaderPort, "put", "k\(i)", "v\(i)") }
        try await f.waitUntilEveryMemberHas("k4")
        let follower = try #require(f.cluster.members.first { $0.id != f.leader }?.id)
        let member = try #require(f.cluster.member(follower))
        // Agreeing members pass.
        try await member.checkInitialHashes()
        _ = await member.node.withMachine { replica in
            replica.machine.store.index.modify(Array("k1".utf8)) { history in
                guard var kv = history.latest else { return }
                kv.value = Array("garbled".utf8)
                history.versions[history.versions.count - 1].state = .value(kv)
            }
        }
        await #expect(throws: DataInconsistency(member: follower)) { try await member.checkInitialHashes() }
        #expect(DataInconsistency(member: 0x1f).description == "1f found data inconsistency with peers")
        await f.close()
    }

    @Test func aMemberWithDivergedDataIsAlarmedAndWritesStop() async throws {
        let f = try await DevClusterFixture { $0.corruptCheckTime = "200ms" }
        // Healthy under writes: checks run meanwhile and find nothing.
        for i in 0..<15 {
            let (code, output) = try await f.run(f.leaderPort, "put", "k\(i)", "v\(i)")
            #expect(code == 0, "\(output)")
        }
        try await f.waitUntilEveryMemberHas("k14")
        try await Task.sleep(for: .milliseconds(600))
        var (_, output) = try await f.run(f.leaderPort, "alarm", "list")
        #expect(output.isEmpty, "no alarm in a healthy cluster: \(output)")

        // A follower's value changes in place, its revision untouched.
        let follower = try #require(f.cluster.members.first { $0.id != f.leader }?.id)
        let node = try #require(f.cluster.nodeDirectory.nodes.withLock { $0[follower] })
        _ = await node.withMachine { replica in
            replica.machine.store.index.modify(Array("k3".utf8)) { history in
                guard var kv = history.latest else { return }
                kv.value = Array("garbled".utf8)
                history.versions[history.versions.count - 1].state = .value(kv)
            }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            (_, output) = try await f.run(f.leaderPort, "alarm", "list")
            if !output.isEmpty { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        // etcdctl prints the alarm as protobuf text: a space before the
        // newline, and member 0 (etcd's: whose data is wrong is not known) left out.
        #expect(output == "alarm:CORRUPT \n", "\(output)")
        let (code, refused) = try await f.run(f.leaderPort, "put", "after", "x")
        #expect(code != 0 && refused.contains("etcdserver: corrupt cluster"), "\(refused)")
        await f.close()
    }
}
