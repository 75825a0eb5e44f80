import EnsembleClient
import EnsembleServer
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// The server's keepalive (etcd's --grpc-keepalive-interval/-timeout): a
/// connection silent for the interval is pinged; one that does not answer is
/// closed, one that does stays.
@Suite(.timeLimit(.minutes(1))) struct GRPCKeepaliveTests {
    @Test func aSilentClientIsPingedThenClosedAndALiveOneStays() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let keepalive = GRPCKeepalive(interval: .milliseconds(200), timeout: .milliseconds(200))
        let server = GRPCServer(group: group, router: GRPCRouter(), keepalive: keepalive)
        let listener = try await server.listen(host: "127.0.0.1", port: 0)
        let port = try #require(listener.localAddress?.port)
        // Our client answers PINGs.
        let live = try await GRPCConnection.connect(host: "127.0.0.1", port: port, group: group)
        // This one sends the preface and SETTINGS, then never another byte.
        let silent = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0]
        try await silent.writeAndFlush(ByteBuffer(bytes: preface))
        try await Task.sleep(for: .milliseconds(1200))
        #expect(!silent.isActive, "a client that answers nothing is closed after interval + timeout")
        #expect(live.isOpen, "a client that answers the pings stays")
        await live.close()
        await server.shutdown(grace: .zero)
        try await group.shutdownGracefully()
    }

    /// A client's PING is answered though nothing else is sent.
    @Test func aPingIsAnsweredWithoutAnythingElseToSend() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = GRPCServer(group: group, router: GRPCRouter())
        let listener = try await server.listen(host: "127.0.0.1", port: 0)
        let port = try #require(listener.localAddress?.port)
        let client = try await RawConnection.connect(port: port)
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0]
        let ping: [UInt8] = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
        try await client.send(preface + ping)
        let ack: [UInt8] = [0, 0, 8, 6, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
        let start = ContinuousClock.now
        try await client.waitFor { $0.contains(ack) }
        #expect(ContinuousClock.now - start < .seconds(2))
        try await client.channel.close()
        await server.shutdown(grace: .zero)
    }

    @Test func theFlagsTakeEtcdsDurations() throws {
        var configuration = MemberConfiguration()
        #expect(try configuration.grpcKeepalive() == .etcd)
        configuration.grpcKeepaliveInterval = "1h30m"
        configuration.grpcKeepaliveTimeout = "5s"
        #expect(try configuration.grpcKeepalive() == GRPCKeepalive(interval: .seconds(5400), timeout: .seconds(5)))
        // 0: etcd sets no enforcement policy, and grpc-go's own (5 minutes) holds.
        configuration.grpcKeepaliveMinTime = "0"
        #expect(try configuration.grpcKeepalive().minimumTime == .seconds(300))
        configuration.grpcKeepaliveTimeout = "soon"
        #expect(throws: ConfigurationError.self) { try configuration.grpcKeepalive() }
    }
}
