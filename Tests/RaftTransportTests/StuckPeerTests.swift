import NIOCore
import NIOPosix
import NIOSSL
import Raft
import RaftTransport
import Synchronization
import Testing

/// Peers that connect but then say nothing: neither side may hold memory or
/// descriptors for them without bound (transport review findings).
@Suite(.serialized, .timeLimit(.minutes(1))) struct StuckPeerTests {
    /// A TLS peer that accepts but never answers the handshake (stopped, its
    /// event loop stuck): NIOSSL would buffer every write made meanwhile,
    /// out of the water mark's sight, so messages to it are dropped until
    /// the handshake is done — and the connection is given up after
    /// ``NIOPeerTransport/handshakeTimeout`` and made again.
    @Test func aPeerThatNeverFinishesItsTLSHandshakeIsNotBufferedFor() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let accepted = Atomic<Int>(0)
        let silent = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                accepted.add(1, ordering: .relaxed)
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(silent.localAddress?.port)
        let context = try NIOSSLContext(configuration: .makeClientConfiguration())
        let a = NIOPeerTransport(group: group, tls: .init(server: context, client: context))
        a.setPeer(2, .init(host: "127.0.0.1", port: port))
        let big = Message(kind: .append, from: 1, to: 2, term: 1, entries: [Entry(term: 1, index: 1, data: [UInt8](repeating: 1, count: 1 << 16))])
        for _ in 0..<50 {
            #expect(a.send([big]).contains(2), "dropped, not buffered, while the handshake waits")
            try await Task.sleep(for: .milliseconds(20))
        }
        // (More than one only if a connect timed out on a loaded machine.)
        let before = accepted.load(ordering: .relaxed)
        #expect(before >= 1 && before <= 3)
        let start = ContinuousClock.now
        while accepted.load(ordering: .relaxed) <= before && ContinuousClock.now - start < .seconds(10) {
            _ = a.send([Message(kind: .heartbeat, from: 1, to: 2, term: 1)])
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(accepted.load(ordering: .relaxed) > before, "the stuck handshake was given up and the peer dialled again")
        await a.shutdown()
        try await silent.close()
        try await group.shutdownGracefully()
    }

    /// An accepted Raft connection that goes quiet (its sender's host gone
    /// without a FIN) is closed after ``NIOPeerTransport/inboundReadTimeout``,
    /// with the half-received frame it held.
    @Test func aQuietInboundConnectionIsClosed() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let b = NIOPeerTransport(group: group)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        b.register(2) { _ in }
        let client = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
        // A frame announced at 100 bytes, 10 of them sent.
        try await client.writeAndFlush(client.allocator.buffer(bytes: [100, 0, 0, 0] + [UInt8](repeating: 0xFF, count: 10)))
        let start = ContinuousClock.now
        while client.isActive && ContinuousClock.now - start < .seconds(10) {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(!client.isActive, "closed by the member")
        #expect(ContinuousClock.now - start >= .seconds(4))
        await b.shutdown()
        try await group.shutdownGracefully()
    }
}
