import EnsembleServer
import Foundation
import NIOCore
import NIOPosix
import Raft
import RaftTransport
import Testing

/// Runs the real etcdctl (Debian's etcd-client 3.4) against an Ensemble node.
/// CI installs etcdctl; its absence is a failure, never a skip.
func etcdctlBlocking(_ port: Int, _ arguments: [String]) throws -> (status: Int32, output: String) {
    try etcdctlBlocking(endpoints: "127.0.0.1:\(port)", arguments)
}

@Suite(.serialized, .timeLimit(.minutes(1))) struct EtcdctlTests {
    @Test func etcdctlPutGetDeleteAndTxnAgainstEnsemble() async throws {
        let directory = NSTemporaryDirectory() + "ensemble-etcdctl-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let node = try NodeLoop(config: RaftConfig(id: 1), directory: directory, bootstrap: [1],
                                machine: KVReplica(), transport: InMemoryTransport())
        node.start()
        defer { node.stop() }
        for _ in 0..<500 where node.status.role != .leader {
            node.campaign()
            try await Task.sleep(for: .milliseconds(20))
        }
        var router = GRPCRouter()
        KVService(node: node, clusterID: 0x1234).register(on: &router)
        let server = try await GRPCServer(group: group, router: router).listen(host: "127.0.0.1", port: 0)
        let port = try #require(server.localAddress?.port)

        // etcdctl blocks; keep it off the cooperative pool's threads.
        func run(_ arguments: String...) async throws -> (Int32, String) {
            try await withCheckedThrowingContinuation { continuation in
                Thread {
                    continuation.resume(with: Result { try etcdctlBlocking(port, arguments) })
                }.start()
            }
        }
        var (status, output) = try await run("put", "foo", "bar")
        #expect(status == 0 && output == "OK\n", "\(output)")
        (status, output) = try await run("put", "fop", "baz")
        (status, output) = try await run("get", "foo")
        #expect(output == "foo\nbar\n", "\(output)")
        (status, output) = try await run("get", "fo", "--prefix", "--keys-only")
        #expect(output == "foo\n\nfop\n\n", "\(output)")
        (status, output) = try await run("get", "foo", "-w", "fields")
        #expect(output.contains("\"Key\" : \"foo\"") && output.contains("\"Version\" : 1"), "\(output)")
        (status, output) = try await run("del", "fo", "--prefix")
        #expect(output == "2\n", "\(output)")
        (status, output) = try await run("put", "k", "v", "--lease=1234abcd")
        #expect(status != 0 && output.contains("etcdserver: requested lease not found"), "\(output)")
        (status, output) = try await run("get", "nothing-here")
        #expect(status == 0 && output.isEmpty, "\(output)")

        try await server.close()
        try await group.shutdownGracefully()
    }
}
