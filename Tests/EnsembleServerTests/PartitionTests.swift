import EnsembleAPI
import EnsembleClient
import Foundation
import SwiftProtobuf
import Testing

/// Network partitions between real processes, each member in a network
/// namespace of its own (root and iproute2 required; CI runs as root).
@Suite(.serialized, .timeLimit(.minutes(2))) struct PartitionTests {
    /// The member among `candidates` that says it leads.
    func leader(_ cluster: ProcessCluster, among candidates: [Int], timeout: Duration = .seconds(10)) async -> (Int, UInt64)? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            for i in candidates {
                if let s = await cluster.status(i), s.leader == s.header.memberID { return (i, s.raftTerm) }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }

    func put(_ key: String, _ value: String) -> Etcdserverpb_PutRequest {
        var request = Etcdserverpb_PutRequest()
        request.key = Data(key.utf8)
        request.value = Data(value.utf8)
        return request
    }

    func get(_ key: String) -> Etcdserverpb_RangeRequest {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(key.utf8)
        return request
    }

    @Test func anIsolatedLeaderNeitherCommitsNorServesStaleReadsAndPreVoteKeepsTheNewLeader() async throws {
        let network = try NetworkNamespaces()
        let cluster = try ProcessCluster(network: network)
        defer { cluster.stop() }
        let (old, _) = try #require(await leader(cluster, among: [0, 1, 2], timeout: .seconds(15)), "no leader:\n\(cluster.log(0))")
        let others = [0, 1, 2].filter { $0 != old }
        let isolated = try await EtcdClient.connect(host: cluster.hosts[old], port: cluster.endpoints[old], group: cluster.group)
        // etcdctl watches require a leader: the isolated member must end the
        // watch once it has known none for three election timeouts, so the
        // client can move on instead of watching a state that never changes.
        let watch = try EtcdctlProcess(endpoints: "\(cluster.hosts[old]):\(cluster.endpoints[old])", ["watch", "k"])
        defer { watch.stop() }
        var watching = false
        for _ in 0..<10 where !watching {
            _ = try await isolated.put(put("k", "v1"), timeout: .seconds(3))
            watching = await watch.waitFor(timeout: .seconds(1)) { $0.contains("v1") }
        }
        try #require(watching, "the watch is open before the partition: \(watch.text)")
        var grant = Etcdserverpb_LeaseGrantRequest()
        grant.ttl = 60
        let lease = try await isolated.leaseGrant(grant, timeout: .seconds(3)).id
        // Keep-alives on a follower go to the leader in another process: all
        // answered, in order (a repeated id too, as clientv3 resends).
        let follower = try await EtcdClient.connect(host: cluster.hosts[others[0]], port: cluster.endpoints[others[0]], group: cluster.group)
        let forwarded = follower.connection.stream("/etcdserverpb.Lease/LeaseKeepAlive")
        var once = Etcdserverpb_LeaseKeepAliveRequest()
        once.id = lease
        for _ in 0..<3 { forwarded.send(try once.serializedBytes()) }
        forwarded.finish()
        var ttls: [Int64] = []
        for try await answer in forwarded.messages { ttls.append(try Etcdserverpb_LeaseKeepAliveResponse(serializedBytes: answer).ttl) }
        #expect(ttls == [60, 60, 60], "keep-alives through a follower")
        await follower.connection.close()

        try network.isolate(old)
        // Nor does it renew leases (the majority's leader would expire them
        // while the client believes its session alive; etcd 3.4.31's
        // ensureLeadership): a keep-alive answer there is an error, not a TTL.
        let renewal = isolated.connection.stream("/etcdserverpb.Lease/LeaseKeepAlive")
        var keepAlive = Etcdserverpb_LeaseKeepAliveRequest()
        keepAlive.id = lease
        renewal.send(try keepAlive.serializedBytes())
        do {
            for try await answer in renewal.messages {
                let ttl = try Etcdserverpb_LeaseKeepAliveResponse(serializedBytes: answer).ttl
                Issue.record("the isolated leader renewed a lease: TTL \(ttl)")
                break
            }
        } catch {}
        renewal.cancel()
        var timeToLive = Etcdserverpb_LeaseTimeToLiveRequest()
        timeToLive.id = lease
        await #expect(throws: (any Error).self, "nor report a lease's TTL") {
            _ = try await isolated.call(
                "/etcdserverpb.Lease/LeaseTimeToLive", timeToLive, as: Etcdserverpb_LeaseTimeToLiveResponse.self, timeout: .seconds(3))
        }
        // The isolated leader can still be reached by clients, but commits nothing.
        await #expect(throws: (any Error).self, "a write through the isolated leader must not be acknowledged") {
            _ = try await isolated.put(put("k", "v2"), timeout: .seconds(3))
        }
        // The majority elects a leader of its own and takes writes.
        let (new, term) = try #require(await leader(cluster, among: others), "the majority elects a leader")
        let majority = try await EtcdClient.connect(host: cluster.hosts[new], port: cluster.endpoints[new], group: cluster.group)
        _ = try await majority.put(put("k", "v3"), timeout: .seconds(3))
        // A linearizable read on the old leader must not return what it has (v1).
        do {
            let stale = try await isolated.range(get("k"), timeout: .seconds(3))
            Issue.record("the isolated member served a linearizable read: \(stale.kvs.map { String(decoding: $0.value, as: UTF8.self) })")
        } catch {}

        let ended = await watch.waitFor(timeout: .seconds(15)) { $0.contains("etcdserver: no leader") }
        #expect(ended, "the watch on the isolated member went on: \(watch.text)")

        // Healing: pre-vote keeps the rejoining member from forcing an election.
        try network.heal(old)
        try await Task.sleep(for: .seconds(3))
        let after = await cluster.status(new)
        #expect(after?.leader == after?.header.memberID, "the majority's leader still leads")
        #expect(after?.raftTerm == term, "no election after healing: term \(term) became \(after?.raftTerm ?? 0)")
        let read = try await isolated.range(get("k"), timeout: .seconds(3))
        #expect(read.kvs.first.map { String(decoding: $0.value, as: UTF8.self) } == "v3", "the old leader caught up; v2 never happened")
        await isolated.connection.close()
        await majority.connection.close()
    }
}
