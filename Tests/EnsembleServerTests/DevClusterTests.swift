import EnsembleServer
import Foundation
import Raft
import Testing

/// `ensemble dev`'s cluster: three members over loopback TCP; etcdctl works
/// against a follower's endpoint too (writes are handed to the leader).
@Suite(.serialized, .timeLimit(.minutes(1))) struct DevClusterTests {
    @Test func etcdctlWorksAgainstEveryMember() async throws {
        let directory = NSTemporaryDirectory() + "ensemble-dev-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try await DevCluster(
            dataDirectory: directory, clientPorts: [0, 0, 0], peerPorts: [0, 0, 0], tickInterval: .milliseconds(25))
        let leader = try await cluster.waitForLeader()
        func run(_ port: Int, _ arguments: String...) async throws -> (Int32, String) {
            try await withCheckedThrowingContinuation { continuation in
                Thread { continuation.resume(with: Result { try etcdctlBlocking(port, arguments) }) }.start()
            }
        }
        for member in cluster.members {
            let key = "from-\(member.id)"
            let (status, output) = try await run(member.clientPort, "put", key, member.id == leader ? "leader" : "follower")
            #expect(status == 0 && output == "OK\n", "member \(member.id): \(output)")
        }
        for member in cluster.members {
            let (_, output) = try await run(member.clientPort, "get", "from-", "--prefix", "--print-value-only")
            #expect(output.split(separator: "\n").count == 3, "member \(member.id): \(output)")
        }
        let first = try #require(cluster.members.first)
        let (_, members) = try await run(first.clientPort, "member", "list")
        #expect(members.split(separator: "\n").count == 3 && members.contains("member-2"), "\(members)")
        let (statusCode, status) = try await run(first.clientPort, "endpoint", "status")
        #expect(statusCode == 0 && status.contains("3.4.0+ensemble"), "\(status)")
        let (_, health) = try await run(first.clientPort, "endpoint", "health")
        #expect(health.contains("is healthy"), "\(health)")
        await cluster.shutdown()
    }

    /// `ensemble dev --tls`: both ports inside TLS with client certificates
    /// from a CA made under the data directory (and reused on restart).
    @Test func tlsClusterServesClientsWithCertificates() async throws {
        let directory = NSTemporaryDirectory() + "ensemble-dev-tls-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = try await DevCluster(
            dataDirectory: directory, clientPorts: [0, 0, 0], peerPorts: [0, 0, 0], tickInterval: .milliseconds(25), tls: true)
        _ = try await cluster.waitForLeader()
        let tls = try #require(cluster.tls)
        let flags = ["--cacert=\(tls.ca)", "--cert=\(tls.clientCert)", "--key=\(tls.clientKey)", "--command-timeout=5s"]
        for member in cluster.members {
            let (status, output) = try await runProcess(
                "/usr/bin/etcdctl", ["--endpoints=https://127.0.0.1:\(member.clientPort)"] + flags + ["put", "k\(member.id)", "v"])
            #expect(status == 0 && output == "OK\n", "member \(member.id): \(output)")
        }
        let first = try #require(cluster.members.first)
        let (status, output) = try await runProcess(
            "/usr/bin/etcdctl",
            ["--endpoints=https://127.0.0.1:\(first.clientPort)", "--cacert=\(tls.ca)", "--command-timeout=3s", "get", "k", "--prefix"])
        #expect(status != 0, "no client certificate, no answer: \(output)")
        #expect(cluster.endpoints.hasPrefix("https://"))
        await cluster.shutdown()
        let ca = try String(contentsOfFile: tls.ca, encoding: .utf8)
        #expect(try String(contentsOfFile: DevTLS(dataDirectory: directory).ca, encoding: .utf8) == ca, "reused")
    }
}
