import EnsembleServer
import Foundation
import Raft
import Synchronization
import Testing

/// Membership through the real etcdctl 3.4: a member added with `member add`
/// joins with `--initial-cluster-state existing`, catches up and serves; a
/// learner is added and promoted; members are updated and removed.
@Suite(.serialized, .timeLimit(.minutes(2))) struct MemberEtcdctlTests {
    @Test func addJoinPromoteUpdateRemove() async throws {
        let f = try await DevClusterFixture()
        for i in 0..<30 { _ = try await f.run(f.leaderPort, "put", "before-\(i)", "v") }

        // A voter joins.
        let dPort = try freePortForTests()
        // A cluster up for less than etcd's health interval (5 s) answers
        // "unhealthy cluster" until then.
        var (code, output) = try await f.runWhileUnhealthy(f.followerPort, "member", "add", "d", "--peer-urls=http://127.0.0.1:\(dPort)")
        #expect(code == 0 && output.contains("added to cluster"), "\(output)")
        #expect(output.contains("ETCD_NAME=\"d\"") && output.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "\(output)")
        #expect(output.contains("d=http://127.0.0.1:\(dPort)") && output.contains("member-1=http://127.0.0.1:"), "\(output)")
        // Answered once applied on the member asked, as etcd's configure:
        // its member list shows the change at once.
        (code, output) = try await f.run(f.followerPort, "member", "list")
        #expect(output.contains(", unstarted, , http://127.0.0.1:\(dPort), , false"), "\(output)")
        let d = try await f.cluster.join(name: "d", peerPort: dPort)
        #expect(d.clusterID == f.cluster.clusterID, "a joiner knows the cluster it joined (its start-up log shows it)")
        let dClient = try #require(d.clientPorts.first)
        try await f.waitUntil(dClient, has: "before-29")
        (code, output) = try await f.run(dClient, "get", "before-", "--prefix", "--keys-only", "--consistency=s", "-w", "json")
        #expect(output.contains("\"count\":30"), "the new member caught up: \(output)")
        (code, output) = try await f.run(dClient, "put", "from-d", "hello")
        #expect(code == 0, "\(output)")
        output = try await f.memberList(until: { $0.contains(", started, d, ") })
        #expect(output.split(separator: "\n").count == 4, "\(output)")
        #expect(output.contains(", started, d, http://127.0.0.1:\(dPort), http://127.0.0.1:\(dClient), false"), "d published its client URL: \(output)")

        // Adding the same peer URL again is refused with etcd's error.
        (code, output) = try await f.runWhileUnhealthy(f.leaderPort, "member", "add", "again", "--peer-urls=http://127.0.0.1:\(dPort)")
        #expect(code != 0 && output.contains("etcdserver: Peer URLs already exists"), "\(output)")

        // A learner joins, cannot vote until promoted.
        let ePort = try freePortForTests()
        // d joined moments ago: not yet in touch for the health interval.
        (code, output) = try await f.runWhileUnhealthy(f.leaderPort, "member", "add", "e", "--learner", "--peer-urls=http://127.0.0.1:\(ePort)")
        #expect(code == 0 && output.contains("added to cluster"), "\(output)")
        let e = try await f.cluster.join(name: "e", peerPort: ePort)
        output = try await f.memberList(until: { $0.contains(", e, ") })
        #expect(output.contains(", e, http://127.0.0.1:\(ePort)") && output.contains(", true\n"), "\(output)")
        let eID = String(e.id, radix: 16)
        // A learner serves Status and serializable reads only (etcd 3.4),
        // from the moment it serves at all.
        let ePortClient = try #require(e.clientPorts.first)
        (code, output) = try await f.run(ePortClient, "get", "anything")
        #expect(code != 0 && output.contains("etcdserver: rpc not supported for learner"), "a linearizable read on the learner: \(output)")
        (code, output) = try await f.run(ePortClient, "get", "anything", "--consistency=s")
        #expect(code == 0, "a serializable read on the learner: \(output)")
        (code, output) = try await f.run(ePortClient, "endpoint", "status")
        #expect(code == 0 && output.contains(", false, true, "), "status on the learner: \(output)")
        (code, output) = try await f.run(ePortClient, "put", "k", "v")
        #expect(code != 0 && output.contains("etcdserver: rpc not supported for learner"), "\(output)")
        var promoted = false
        for _ in 0..<50 where !promoted {
            (code, output) = try await f.run(f.leaderPort, "member", "promote", eID)
            promoted = code == 0
            if !promoted {
                #expect(output.contains("in sync with leader"), "\(output)")
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(promoted && output.contains("promoted in cluster"), "\(output)")
        (code, output) = try await f.run(f.leaderPort, "member", "promote", eID)
        #expect(code != 0 && output.contains("etcdserver: can only promote a learner member"), "\(output)")

        // Update d's peer URLs, then remove d and e.
        let dID = String(d.id, radix: 16)
        (code, output) = try await f.run(f.leaderPort, "member", "update", dID, "--peer-urls=http://localhost:\(dPort)")
        #expect(code == 0 && output.contains("updated in cluster"), "\(output)")
        (code, output) = try await f.run(f.leaderPort, "member", "list")
        #expect(output.contains("http://localhost:\(dPort)"), "\(output)")
        (code, output) = try await f.runWhileUnhealthy(f.leaderPort, "member", "remove", dID)
        #expect(code == 0 && output.contains("removed from cluster"), "\(output)")
        // The removed member learns it (`ensemble serve` then stops).
        let noticed = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await d.waitUntilRemoved(); return true }
            group.addTask { try? await Task.sleep(for: .seconds(5)); return false }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        #expect(noticed, "d heard of its removal")
        (code, output) = try await f.run(f.leaderPort, "member", "remove", eID)
        #expect(code == 0, "\(output)")
        (code, output) = try await f.run(f.leaderPort, "member", "remove", dID)
        #expect(code != 0 && output.contains("etcdserver: member not found"), "a removed id: etcd's answer \(output)")
        (code, output) = try await f.run(f.leaderPort, "member", "remove", "1234")
        #expect(code != 0 && output.contains("etcdserver: member not found"), "\(output)")
        (code, output) = try await f.run(f.leaderPort, "member", "list")
        #expect(output.split(separator: "\n").count == 3, "\(output)")
        (code, output) = try await f.run(f.leaderPort, "put", "after", "v")
        #expect(code == 0, "the three remaining members still commit: \(output)")
        await f.close()
    }

    /// A joiner must have been added (`member add`) and list the whole
    /// cluster in --initial-cluster, as etcd 3.4 checks before it starts.
    @Test func aJoinerNotAddedIsRefusedWithEtcdsError() async throws {
        let f = try await DevClusterFixture()
        let port = try freePortForTests()
        do {
            _ = try await f.cluster.join(name: "stranger", peerPort: port)
            Issue.record("a joiner that was never added started")
        } catch {
            let message = "\(error)"
            #expect(message.hasPrefix("error validating peerURLs {ClusterID:\(String(f.cluster.clusterID, radix: 16)) Members:[&{ID:"), "\(message)")
            #expect(message.hasSuffix("RemovedMemberIDs:[]}: member count is unequal"), "\(message)")
        }
        await f.close()
    }

    /// Followers are in touch with each other by link pings, so a leader
    /// elected in a cluster that has been up for the health interval takes a
    /// member at once, as etcd's does (its peer streams run between all
    /// members), instead of answering "unhealthy cluster" for 5 s.
    @Test func aLeaderJustElectedTakesAMemberAtOnce() async throws {
        let f = try await DevClusterFixture()
        try await Task.sleep(for: .seconds(6))
        let target = try #require(f.cluster.members.first { $0.id != f.leader })
        let targetPort = target.clientPort
        var (code, output) = try await f.run(f.leaderPort, ["--endpoints=\(f.cluster.endpoints)", "move-leader", String(target.id, radix: 16)])
        #expect(code == 0 && output.contains("Leadership transferred"), "\(output)")
        let port = try freePortForTests()
        (code, output) = try await f.run(targetPort, "member", "add", "e", "--learner", "--peer-urls=http://127.0.0.1:\(port)")
        #expect(code == 0 && output.contains("added to cluster"), "\(output)")
        await f.close()
    }
}

func freePortForTests() throws -> Int {
    try freePortsForTests(1)[0]
}

/// `count` distinct ports that were free a moment ago on `host`: every
/// socket stays bound until all are chosen, so none is handed out twice.
/// They are drawn at random below Linux's ephemeral range (32768–60999):
/// the kernel's own choice came from that range, where the outgoing
/// connections of tests running alongside take their local ports, so a port
/// chosen here could be taken before the test bound it (seen in CI). (A port
/// free on 127.0.0.1 may be taken on 127.0.0.2: a test that listens on
/// another loopback address asks for ports there.)
/// Every port `freePortsForTests` handed out in this process is never handed
/// out again: between a probe socket's close and the test's own bind, another
/// test could otherwise draw the same port (a CI run failed so).
private let portsHandedOut = Mutex<Set<Int>>([])

func freePortsForTests(_ count: Int, host: String = "127.0.0.1") throws -> [Int] {
    var sockets: [Int32] = []
    defer { for socket in sockets { close(socket) } }
    var ports: [Int] = []
    var attempts = 0
    while ports.count < count {
        attempts += 1
        guard attempts < 10_000 else { throw EtcdMissing(reason: "cannot find a free port") }
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        let port = Int.random(in: 12_000...32_000)
        address.sin_port = UInt16(port).bigEndian
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 }
        }
        guard bound, !ports.contains(port), portsHandedOut.withLock({ $0.insert(port).inserted }) else {
            close(socket)
            continue
        }
        sockets.append(socket)
        ports.append(port)
    }
    return ports
}

extension DevClusterFixture {
    /// Runs etcdctl again while it answers "unhealthy cluster" (a membership
    /// change the leader refuses until it has been in touch with every voter
    /// for 5 s, as etcd's does), up to 20 s.
    func runWhileUnhealthy(_ port: Int, _ arguments: String...) async throws -> (Int32, String) {
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            let (code, output) = try await run(port, arguments)
            guard code != 0, output.contains("etcdserver: unhealthy cluster"), ContinuousClock.now < deadline else { return (code, output) }
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    /// `member list` once it satisfies `condition` (members publish their
    /// names asynchronously), or the last answer after 5 s.
    func memberList(until condition: (String) -> Bool) async throws -> String {
        var output = ""
        for _ in 0..<50 {
            (_, output) = try await run(leaderPort, "member", "list")
            if condition(output) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        return output
    }
}
