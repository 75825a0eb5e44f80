import EnsembleServer
import Foundation
import NIOCore
import NIOPosix
import Raft
import RaftTransport
import Testing

/// Three node loops talking Raft over real TCP connections on loopback.
@Suite(.timeLimit(.minutes(1))) struct NIOClusterTests {
    @Test func clusterOverTCPReplicatesAndSurvivesALeaderStop() async throws {
        let directory = NSTemporaryDirectory() + "ensemble-nio-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let ids: [NodeID] = [1, 2, 3]
        var transports: [NodeID: NIOPeerTransport] = [:]
        var ports: [NodeID: Int] = [:]
        for id in ids {
            let transport = NIOPeerTransport(group: group)
            ports[id] = try await transport.listen(host: "127.0.0.1", port: 0)
            transports[id] = transport
        }
        for id in ids {
            for peer in ids where peer != id {
                transports[id]?.setPeer(peer, .init(host: "127.0.0.1", port: ports[peer] ?? 0))
            }
        }
        var options = NodeLoop<RegisterMachine>.Options()
        options.tickInterval = .milliseconds(25)
        var nodes: [NodeID: NodeLoop<RegisterMachine>] = [:]
        for id in ids {
            var config = RaftConfig(id: id)
            config.seed = id
            guard let transport = transports[id] else { continue }
            let node = try NodeLoop(config: config, directory: "\(directory)/n\(id)", bootstrap: ids,
                                    machine: RegisterMachine(), transport: transport, options: options)
            node.start()
            nodes[id] = node
        }
        func leader() async throws -> NodeLoop<RegisterMachine> {
            for _ in 0..<600 {
                if let node = nodes.values.first(where: { $0.status.role == .leader }) { return node }
                try await Task.sleep(for: .milliseconds(10))
            }
            throw NodeError.noLeader
        }
        func write(_ key: String, _ value: String) async throws {
            for _ in 0..<100 {
                do {
                    _ = try await leader().propose(RegisterMachine.put(key, value))
                    return
                } catch {
                    guard definitelyNotApplied(error) else { throw error }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
        }
        try await write("a", "1")
        let first = try await leader()
        first.stop()
        nodes[first.id] = nil
        try await write("b", "2")
        for node in nodes.values {
            var value: String?
            for _ in 0..<300 where value != "2" {
                value = try? await node.read("b")
                if value != "2" { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(value == "2", "member \(node.id)")
            #expect(try await node.read("a", linearizable: false) == "1")
        }
        for node in nodes.values { node.stop() }
        for transport in transports.values { await transport.shutdown() }
        try await group.shutdownGracefully()
    }
}
