import EnsembleServer
import Foundation
import Raft
import Testing

/// Watch, Lease and the recipes built on them (lock), driven by the real
/// etcdctl 3.4 against a three-member dev cluster. Follower endpoints are used
/// on purpose: watches are served locally, lease renewals go to the leader.
@Suite(.serialized, .timeLimit(.minutes(2))) struct WatchLeaseEtcdctlTests {
    @Test func watchDeliversLiveEventsWithPrevKVAndReplaysHistory() async throws {
        let f = try await DevClusterFixture()
        let watch = try EtcdctlProcess(port: f.followerPort, ["watch", "w/", "--prefix", "--prev-kv"])
        // The watch is created when etcdctl connects; give it a moment, then write.
        try await Task.sleep(for: .milliseconds(500))
        _ = try await f.run(f.leaderPort, "put", "w/a", "1")
        _ = try await f.run(f.followerPort, "put", "w/a", "2")
        _ = try await f.run(f.leaderPort, "put", "other", "x")
        _ = try await f.run(f.leaderPort, "del", "w/a")
        let expected = "PUT\nw/a\n1\nPUT\nw/a\n1\nw/a\n2\nDELETE\nw/a\n2\nw/a\n\n"
        let live = await watch.waitFor { $0 == expected }
        #expect(live, "\(watch.text)")
        watch.stop()

        // A start revision replays what happened since, then continues live.
        let (_, json) = try await f.run(f.leaderPort, "get", "other", "-w", "json")
        #expect(json.contains("\"revision\""), "\(json)")
        let replay = try EtcdctlProcess(port: f.followerPort, ["watch", "w/a", "--rev=1"])
        let replayed = await replay.waitFor { $0 == "PUT\nw/a\n1\nPUT\nw/a\n2\nDELETE\nw/a\n\n" }
        #expect(replayed, "\(replay.text)")
        _ = try await f.run(f.leaderPort, "put", "w/a", "3")
        let continued = await replay.waitFor { $0.hasSuffix("PUT\nw/a\n3\n") }
        #expect(continued, "\(replay.text)")
        replay.stop()

        // A compacted start revision is refused with the compaction revision.
        let (_, compact) = try await f.run(f.leaderPort, "compact", "5")
        #expect(compact.contains("compacted revision 5"), "\(compact)")
        let old = try EtcdctlProcess(port: f.leaderPort, ["watch", "w/a", "--rev=2"])
        let refused = await old.waitFor { $0.contains("required revision has been compacted") }
        #expect(refused, "\(old.text)")
        old.stop()
        await f.close()
    }

    @Test func leaseGrantAttachTimeToLiveKeepAliveRevoke() async throws {
        let f = try await DevClusterFixture()
        let (status, granted) = try await f.run(f.followerPort, "lease", "grant", "60")
        #expect(status == 0 && granted.hasSuffix(" granted with TTL(60s)\n"), "\(granted)")
        let id = try #require(granted.split(separator: " ").dropFirst().first.map(String.init))
        #expect(id.count == 16, "etcdctl prints ids as %016x: \(id)")

        var (code, output) = try await f.run(f.followerPort, "put", "leased", "v", "--lease=\(id)")
        #expect(code == 0 && output == "OK\n", "\(output)")
        (_, output) = try await f.run(f.followerPort, "lease", "timetolive", id, "--keys")
        #expect(output.hasPrefix("lease \(id) granted with TTL(60s), remaining(") && output.contains("attached keys([leased])"), "\(output)")
        (_, output) = try await f.run(f.leaderPort, "lease", "list")
        #expect(output == "found 1 leases\n\(id)\n", "\(output)")
        (_, output) = try await f.run(f.followerPort, "lease", "keep-alive", "--once", id)
        #expect(output == "lease \(id) keepalived with TTL(60)\n", "\(output)")
        (_, output) = try await f.run(f.followerPort, "get", "leased", "-w", "fields")
        #expect(output.contains("\"Lease\" : \(Int64(id, radix: 16) ?? 0)"), "\(output)")

        (code, output) = try await f.run(f.followerPort, "lease", "revoke", id)
        #expect(code == 0 && output == "lease \(id) revoked\n", "\(output)")
        (_, output) = try await f.run(f.leaderPort, "get", "leased")
        #expect(output.isEmpty, "the lease's key goes with it: \(output)")
        (_, output) = try await f.run(f.leaderPort, "lease", "timetolive", id)
        #expect(output == "lease \(id) already expired\n", "\(output)")
        (code, output) = try await f.run(f.leaderPort, "lease", "revoke", id)
        #expect(code != 0 && output.contains("etcdserver: requested lease not found"), "\(output)")
        await f.close()
    }

    @Test func anExpiredLeaseTakesItsKeysAndAKeptAliveOneDoesNot() async throws {
        let f = try await DevClusterFixture()
        let (_, short) = try await f.run(f.leaderPort, "lease", "grant", "2")
        let expiring = try #require(short.split(separator: " ").dropFirst().first.map(String.init))
        // 3 s, renewed every second: a keep-alive may come up to 2 s late on
        // a loaded machine (2 s left only 0.8 s, and a full CI run once lost it).
        let (_, long) = try await f.run(f.leaderPort, "lease", "grant", "3")
        let kept = try #require(long.split(separator: " ").dropFirst().first.map(String.init))
        _ = try await f.run(f.leaderPort, "put", "expiring", "v", "--lease=\(expiring)")
        _ = try await f.run(f.leaderPort, "put", "kept", "v", "--lease=\(kept)")
        let keepAlive = try EtcdctlProcess(port: f.followerPort, ["lease", "keep-alive", kept])
        try await Task.sleep(for: .seconds(4))
        var (_, output) = try await f.run(f.followerPort, "get", "expiring")
        #expect(output.isEmpty, "expired by the leader and deleted everywhere: \(output)")
        (_, output) = try await f.run(f.followerPort, "get", "kept", "--print-value-only")
        #expect(output == "v\n", "\(output) keep-alive: \(keepAlive.text)")
        #expect(keepAlive.text.contains("lease \(kept) keepalived with TTL(3)"), "\(keepAlive.text)")
        keepAlive.stop()
        await f.close()
    }

    @Test func lockIsMutuallyExclusiveAndFreedWhenTheHolderDies() async throws {
        let f = try await DevClusterFixture()
        // Sessions of 5 s: a 2 s one lost its lease in full parallel runs
        // (a starved test process renewed it too late) and the waiter took
        // the lock from a live holder.
        let first = try EtcdctlProcess(port: f.followerPort, ["lock", "--ttl=5", "mutex"])
        let holds = await first.waitFor { $0.hasPrefix("mutex/") }
        #expect(holds, "\(first.text)")
        let second = try EtcdctlProcess(port: f.leaderPort, ["lock", "--ttl=5", "mutex"])
        try await Task.sleep(for: .seconds(1))
        #expect(second.text.isEmpty, "the lock is held: \(second.text); holder: \(first.text)")
        // The holder crashes: its session lease expires and the waiter gets the lock.
        first.kill()
        let acquired = await second.waitFor(timeout: .seconds(15)) { $0.hasPrefix("mutex/") }
        #expect(acquired, "\(second.text)")
        second.stop()
        await f.close()
    }

    /// `etcdctl elect`: one leader at a time, observers see who leads, and a
    /// candidate that resigns (Ctrl-C) hands over to the next.
    @Test func electionHasOneLeaderAndHandsOver() async throws {
        let f = try await DevClusterFixture()
        let alpha = try EtcdctlProcess(port: f.followerPort, ["elect", "service", "alpha"])
        let leads = await alpha.waitFor { $0.hasPrefix("service/") && $0.contains("alpha") }
        #expect(leads, "\(alpha.text)")
        let beta = try EtcdctlProcess(port: f.leaderPort, ["elect", "service", "beta"])
        let observer = try EtcdctlProcess(port: f.leaderPort, ["elect", "--listen", "service"])
        let observed = await observer.waitFor { $0.contains("alpha") }
        #expect(observed, "\(observer.text)")
        try await Task.sleep(for: .milliseconds(500))
        #expect(beta.text.isEmpty, "only one leader: \(beta.text)")
        alpha.interrupt()
        let handedOver = await beta.waitFor { $0.hasPrefix("service/") && $0.contains("beta") }
        // etcdctl resigns with one Txn on SIGINT; if that failed (it says why),
        // the key stays until its 60 s lease expires.
        #expect(handedOver, "beta: \(beta.text)\nalpha after SIGINT: \(alpha.text)")
        let seen = await observer.waitFor { $0.contains("beta") }
        #expect(seen, "\(observer.text)")
        beta.stop()
        observer.stop()
        await f.close()
    }

    /// `etcdctl make-mirror`: what exists is copied, then later puts and
    /// deletes follow (a watch from the copy's revision), here into another
    /// prefix of the same cluster through another member.
    @Test func makeMirrorCopiesThenFollows() async throws {
        let f = try await DevClusterFixture()
        for i in 1...3 { _ = try await f.run(f.leaderPort, "put", "src/k\(i)", "v\(i)") }
        let mirror = try EtcdctlProcess(
            port: f.followerPort, ["make-mirror", "--prefix=src/", "--dest-prefix=mirror/", "127.0.0.1:\(f.leaderPort)"])
        try await f.waitUntil(f.leaderPort, has: "mirror/k3")
        _ = try await f.run(f.followerPort, "put", "src/k4", "v4")
        _ = try await f.run(f.followerPort, "del", "src/k1")
        try await f.waitUntil(f.leaderPort, has: "mirror/k4")
        let deadline = ContinuousClock.now + .seconds(10)
        var keys = ""
        while ContinuousClock.now < deadline {
            keys = try await f.run(f.leaderPort, "get", "mirror/", "--prefix", "--keys-only").1
            if !keys.contains("mirror/k1") { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(keys.split(separator: "\n").map(String.init) == ["mirror/k2", "mirror/k3", "mirror/k4"], "\(keys)\n\(mirror.text)")
        let (_, value) = try await f.run(f.leaderPort, "get", "mirror/k4", "--print-value-only")
        #expect(value == "v4\n")
        mirror.stop()
        await f.close()
    }
}
