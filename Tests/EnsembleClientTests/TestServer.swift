import EnsembleClient
import EnsembleServer
import Foundation
import NIOCore
import NIOPosix
import Raft
import RaftTransport
import Synchronization
import Testing

/// A real single-member Ensemble node serving etcd's KV, Lease and Watch
/// services over gRPC on a free loopback port, plus test routes:
///
/// - `/test.Test/Slow`: answers after 5 s, or as soon as the server stops
///   (for deadlines; the server does not cancel a handler whose caller left);
/// - `/test.Test/Fail`: fails with code 9 and a message that needs percent-encoding;
/// - `/test.Test/Echo`: returns the request;
/// - `/test.Test/EchoStream`: echoes every message, ends OK on half-close.
final class TestServer: Sendable {
    let group: MultiThreadedEventLoopGroup
    let node: NodeLoop<KVReplica>
    let server: any Channel
    let grpc: GRPCServer
    let directory: String
    let port: Int
    let stopping: StopFlag

    static let failMessage = "100% wrong:\nünïcode"

    private init(
        group: MultiThreadedEventLoopGroup, node: NodeLoop<KVReplica>, server: any Channel, grpc: GRPCServer, directory: String,
        port: Int, stopping: StopFlag
    ) {
        self.stopping = stopping
        self.grpc = grpc
        self.group = group
        self.node = node
        self.server = server
        self.directory = directory
        self.port = port
    }

    /// `watchQueueBytes`, `watchPending`: the Watch service's per-stream bounds.
    static func start(watchQueueBytes: Int = 4 << 20, watchPending: Int = 1_000) async throws -> TestServer {
        let directory = NSTemporaryDirectory() + "ensemble-client-\(UUID().uuidString)"
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let node = try NodeLoop(
            config: RaftConfig(id: 1), directory: directory, bootstrap: [1], machine: KVReplica(),
            transport: InMemoryTransport())
        node.start()
        for _ in 0..<500 where node.status.role != .leader {
            node.campaign()
            try await Task.sleep(for: .milliseconds(20))
        }
        var router = GRPCRouter()
        KVService(node: node, clusterID: 0x1234).register(on: &router)
        LeaseService(node: node, clusterID: 0x1234).register(on: &router)
        WatchService(node: node, clusterID: 0x1234, maxQueuedBytes: watchQueueBytes, maxPendingRequests: watchPending, on: group.next()).register(on: &router)
        let stopping = StopFlag()
        router.unary["/test.Test/Slow"] = .task { _ in
            for _ in 0..<500 where !stopping.isSet { try? await Task.sleep(for: .milliseconds(10)) }
            return .success([])
        }
        router.unary["/test.Test/Fail"] = .task { _ in .failure(GRPCStatus(code: 9, message: failMessage)) }
        router.unary["/test.Test/Echo"] = .task { request in .success(request) }
        router.streaming["/test.Test/EchoStream"] = { stream in EchoReceiver(stream) }
        let grpc = GRPCServer(group: group, router: router)
        let server = try await grpc.listen(host: "127.0.0.1", port: 0)
        guard let port = server.localAddress?.port else { throw GRPCStatus(code: 14, message: "no port") }
        return TestServer(group: group, node: node, server: server, grpc: grpc, directory: directory, port: port, stopping: stopping)
    }

    func stop() async {
        // Let slow handlers finish before their event loop goes away.
        stopping.set()
        try? await Task.sleep(for: .milliseconds(30))
        try? await server.close()
        node.stop()
        try? await group.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Set once, read from any thread.
final class StopFlag: Sendable {
    private let flag = Atomic(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// Echoes each message back; ends the call OK when the client half-closes.
final class EchoReceiver: GRPCStreamReceiver {
    let stream: GRPCServerStream
    init(_ stream: GRPCServerStream) { self.stream = stream }
    func received(_ message: [UInt8]) { stream.send(message) }
    func clientFinished() { stream.finish(.ok) }
    func closed() {}
}

/// The GRPCCallError `body` throws; nil (and an issue) for any other outcome.
func callError(of body: () async throws -> Void) async -> GRPCCallError? {
    do {
        try await body()
        return nil
    } catch let error as GRPCCallError {
        return error
    } catch {
        Issue.record("not a GRPCCallError: \(error)")
        return nil
    }
}
