import EnsembleServer
import Foundation
import Raft

/// A three-member dev cluster on free ports for etcdctl tests.
final class DevClusterFixture {
    let directory = NSTemporaryDirectory() + "ensemble-fixture-\(UUID().uuidString)"
    let cluster: DevCluster
    let leader: NodeID

    init(spaceQuota: Int = 2 << 30, configure: (inout MemberConfiguration) -> Void = { _ in }) async throws {
        // 50 ms ticks: a 500 ms election timeout. At 250 ms a loaded CI
        // machine (fsyncs of 100+ ms, threads waiting for a core) changed
        // leaders in the middle of tests.
        cluster = try await DevCluster(
            dataDirectory: directory, clientPorts: [0, 0, 0], peerPorts: [0, 0, 0], tickInterval: .milliseconds(50),
            spaceQuota: spaceQuota, configure: configure)
        leader = try await cluster.waitUntilReady()
    }

    var leaderPort: Int { cluster.members.first { $0.id == leader }?.clientPort ?? 0 }
    var followerPort: Int { cluster.members.first { $0.id != leader }?.clientPort ?? 0 }

    /// Runs etcdctl to completion off the cooperative pool.
    func run(_ port: Int, _ arguments: String...) async throws -> (Int32, String) {
        try await run(port, arguments)
    }

    func run(_ port: Int, _ arguments: [String]) async throws -> (Int32, String) {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try etcdctlBlocking(port, arguments) }) }.start()
        }
    }

    /// Waits until a serializable read of `key` finds it on every member.
    func waitUntilEveryMemberHas(_ key: String, timeout: Duration = .seconds(10)) async throws {
        for member in cluster.members { try await waitUntil(member.clientPort, has: key, timeout: timeout) }
    }

    /// Waits until a serializable read of `key` on the member serving `port`
    /// finds it: that member has applied the write.
    func waitUntil(_ port: Int, has key: String, timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (code, output) = try await run(port, "get", key, "--consistency=s", "--keys-only")
            if code == 0 && !output.isEmpty { return }
            guard ContinuousClock.now < deadline else { throw FixtureError("\(key) not on :\(port) after \(timeout): \(output)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func close() async {
        await cluster.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
