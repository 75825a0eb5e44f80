import Foundation
import Testing

/// Followers hand calls that need the leader (membership changes, lease
/// keep-alives and time-to-live) to the leader's peer URL, as etcd's do, so
/// members need not reach each other's client URLs. Here every member
/// advertises a client URL nobody can reach: only the peer ports carry the
/// forwarded calls.
@Suite(.serialized, .timeLimit(.minutes(2))) struct PeerForwardingTests {
    @Test func followersForwardOverPeerURLs() async throws {
        let cluster = try ProcessCluster { cluster in
            // Port 1 on loopback: refused at once.
            for i in 0..<3 { cluster.advertiseClientURL(i, "http://127.0.0.1:1") }
        }
        defer { cluster.stop() }
        let leader = try #require(await cluster.leader(), "no leader; log:\n\(cluster.log(0))")
        let follower = "127.0.0.1:\(cluster.endpoints[(leader + 1) % 3])"

        let grant = try await etcdctl(endpoints: follower, ["lease", "grant", "60"])
        #expect(grant.status == 0, "\(grant.output)")
        let id = try #require(grant.output.split(separator: " ").dropFirst().first.map(String.init), "\(grant.output)")
        let kept = try await etcdctl(endpoints: follower, ["lease", "keep-alive", "--once", id])
        #expect(kept.status == 0 && kept.output.contains("keepalived with TTL(60)"), "\(kept.output)")
        let ttl = try await etcdctl(endpoints: follower, ["lease", "timetolive", id])
        #expect(ttl.status == 0 && ttl.output.contains("granted with TTL(60s)"), "\(ttl.output)")

        let peerPort = try freePortForTests()
        var added = try await etcdctl(endpoints: follower, ["member", "add", "x", "--learner", "--peer-urls=http://127.0.0.1:\(peerPort)"])
        for _ in 0..<40 where added.status != 0 && added.output.contains("unhealthy cluster") {
            try await Task.sleep(for: .milliseconds(250))
            added = try await etcdctl(endpoints: follower, ["member", "add", "x", "--learner", "--peer-urls=http://127.0.0.1:\(peerPort)"])
        }
        #expect(added.status == 0 && added.output.contains("added to cluster"), "\(added.output)")
        // The follower answered once it had applied the change itself (etcd's
        // configure): its own member list shows it at once, and the answer's
        // header is the follower's (`-w json`).
        let listed = try await etcdctl(endpoints: follower, ["member", "list"])
        #expect(listed.output.contains(", unstarted, , http://127.0.0.1:\(peerPort), , true"), "\(listed.output)")
        let status = try await etcdctl(endpoints: follower, ["endpoint", "status", "-w", "json"])
        let again = try await etcdctl(endpoints: follower, ["member", "remove", "-w", "json", try memberID(of: peerPort, in: listed.output)])
        let followerID = try #require(status.output.firstMatch(of: /"member_id":(\d+)/)?.1, "\(status.output)")
        #expect(again.output.contains("\"member_id\":\(followerID)"), "the follower's header: \(again.output)")

        // A member removed through its own endpoint is answered (its leader
        // no longer answers its ReadIndex, so it does not wait for one).
        let own = String(try #require(UInt64(String(followerID))), radix: 16)
        let start = ContinuousClock.now
        let removed = try await etcdctl(endpoints: follower, ["member", "remove", own])
        #expect(removed.status == 0 && removed.output.contains("removed from cluster"), "\(removed.output)")
        #expect(ContinuousClock.now - start < .seconds(3), "answered without waiting out a ReadIndex")
    }

    /// The hex id `member list` shows for the member with peer port `port`.
    func memberID(of port: Int, in list: String) throws -> String {
        let line = try #require(list.split(separator: "\n").first { $0.contains("127.0.0.1:\(port)") }, "\(list)")
        return String(line.split(separator: ",")[0])
    }
}
