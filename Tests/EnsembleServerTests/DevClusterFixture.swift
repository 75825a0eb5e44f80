import EnsembleServer
import Foundation
import Raft

/// A three-member dev cluster on free ports for etcdctl tests.
final class DevClusterFixture {
    let directory = NSTemporaryDirectory() + "ensemble-fixture-\(UUID().uuidString)"
    let cluster: DevCluster
    let leader: NodeID

    init(spaceQuota: Int = 2 << 30) async throws {
        cluster = try await DevCluster(
            dataDirectory: directory, clientPorts: [0, 0, 0], peerPorts: [0, 0, 0], tickInterval: .milliseconds(25),
            spaceQuota: spaceQuota)
        leader = try await cluster.waitForLeader()
    }

    var leaderPort: Int { cluster.members.first { $0.id == leader }?.clientPort ?? 0 }
    var followerPort: Int { cluster.members.first { $0.id != leader }?.clientPort ?? 0 }

    /// Runs etcdctl to completion off the cooperative pool.
    func run(_ port: Int, _ arguments: String...) async throws -> (Int32, String) {
        try await run(port, arguments)
    }

    func run(_ port: Int, _ arguments: [String]) async throws -> (Int32, String) {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try etcdctl(port, arguments) }) }.start()
        }
    }

    func close() async {
        await cluster.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
