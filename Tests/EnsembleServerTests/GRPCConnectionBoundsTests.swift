import EnsembleServer
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// What one connection can make the server hold, with raw HTTP/2 frames.
@Suite(.timeLimit(.minutes(1))) struct GRPCConnectionBoundsTests {
    /// HTTP/2 windows are credited as request data arrives, so the server
    /// bounds what a connection can make it hold for calls whose messages
    /// are not yet whole: 128 of the largest requests. A client parking a
    /// nearly whole message on stream after stream gets RESOURCE_EXHAUSTED
    /// for the call that passes the bound; the calls before it go on.
    @Test func unfinishedMessagesOnOneConnectionAreBounded() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        var router = GRPCRouter()
        router.unary["/t.T/Echo"] = .task { .success($0) }
        // 1 KiB messages at most: 128 KiB held per connection.
        let server = GRPCServer(group: group, router: router, maxRequestBytes: 1024)
        let listener = try await server.listen(host: "127.0.0.1", port: 0)
        let port = try #require(listener.localAddress?.port)
        let client = try await RawConnection.connect(port: port)

        var out = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + Self.frame(type: 4, flags: 0, stream: 0, [])
        let streams = (0..<140).map { UInt32(2 * $0 + 1) }
        for stream in streams {
            out += Self.frame(type: 1, flags: 0x4, stream: stream, Self.requestHeaders)
            // A message of 1,024 bytes announced, 1,000 sent.
            out += Self.frame(type: 0, flags: 0, stream: stream, [0, 0, 0, 4, 0] + [UInt8](repeating: 7, count: 1000))
        }
        try await client.send(out)
        let refusal = Array("exceeds 131072 bytes".utf8)
        try await client.waitFor { $0.contains(refusal) }
        // The first call is still open: its message completes and is echoed.
        try await client.send(Self.frame(type: 0, flags: 0x1, stream: 1, [UInt8](repeating: 7, count: 24)))
        try await client.waitFor { bytes in
            Self.frames(bytes).contains { $0.type == 0 && $0.stream == 1 && $0.length == 1029 }
        }
        let refused = Self.frames(client.bytes).filter { $0.type == 1 && $0.stream != 1 }.map(\.stream)
        #expect(!refused.isEmpty && refused.allSatisfy { $0 > 200 }, "refused streams: \(refused)")
        try await client.channel.close()
        await server.shutdown(grace: .zero)
    }

    /// A connection that never shows its protocol (nor finishes a TLS
    /// handshake) is closed after the connection timeout (grpc-go's, 120 s
    /// by default); one that spoke HTTP/2 in time stays.
    @Test func aSilentConnectionIsClosedAfterTheConnectionTimeout() async throws {
        var router = GRPCRouter()
        router.unary["/t.T/Echo"] = .task { .success($0) }
        // Long enough for the speaking client to speak even on a loaded
        // machine (the whole suite runs in parallel; 300 ms was not).
        let server = GRPCServer(group: MultiThreadedEventLoopGroup.singleton, router: router, connectionTimeout: .seconds(2))
        let listener = try await server.listen(host: "127.0.0.1", port: 0)
        let port = try #require(listener.localAddress?.port)
        let speaking = try await RawConnection.connect(port: port)
        try await speaking.send(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + Self.frame(type: 4, flags: 0, stream: 0, []))
        let silent = try await RawConnection.connect(port: port)
        try await silent.channel.closeFuture.get()
        try await Task.sleep(for: .milliseconds(500))
        #expect(speaking.channel.isActive)
        try await speaking.channel.close()
        await server.shutdown(grace: .zero)
    }

    /// An answer the client grants no window for is dropped when the call's
    /// deadline passes (RST_STREAM CANCEL), not held for the connection's life.
    @Test func anAnswerHeldBackByFlowControlGoesAtTheDeadline() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        var router = GRPCRouter()
        router.unary["/t.T/Echo"] = .task { .success($0) }
        let server = GRPCServer(group: group, router: router)
        let listener = try await server.listen(host: "127.0.0.1", port: 0)
        let port = try #require(listener.localAddress?.port)
        let client = try await RawConnection.connect(port: port)
        // SETTINGS_INITIAL_WINDOW_SIZE 0: no DATA may come on any stream.
        var out = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + Self.frame(type: 4, flags: 0, stream: 0, [0, 4, 0, 0, 0, 0])
        var headers = Self.requestHeaders
        headers += [0, 12] + Array("grpc-timeout".utf8) + [4] + Array("300m".utf8)
        out += Self.frame(type: 1, flags: 0x4, stream: 1, headers)
        out += Self.frame(type: 0, flags: 0x1, stream: 1, [0, 0, 0, 0, 3, 1, 2, 3])
        try await client.send(out)
        try await client.waitFor { bytes in
            Self.frames(bytes).contains { $0.type == 3 && $0.stream == 1 }
        }
        let frames = Self.frames(client.bytes)
        #expect(!frames.contains { $0.type == 0 && $0.stream == 1 }, "no DATA without a window: \(frames)")
        // RST_STREAM CANCEL (8).
        let bytes = client.bytes
        #expect(bytes.indices.contains { i in
            i + 13 <= bytes.count && Array(bytes[i..<i + 9]) == [0, 0, 4, 3, 0, 0, 0, 0, 1] && Array(bytes[i + 9..<i + 13]) == [0, 0, 0, 8]
        })
        try await client.channel.close()
        await server.shutdown(grace: .zero)
    }

    /// :method POST, :scheme http, :path /t.T/Echo, :authority t,
    /// content-type application/grpc, te trailers: HPACK literals without
    /// indexing, no Huffman.
    static let requestHeaders: [UInt8] = {
        let fields: [(String, String)] = [
            (":method", "POST"), (":scheme", "http"), (":path", "/t.T/Echo"), (":authority", "t"),
            ("content-type", "application/grpc"), ("te", "trailers"),
        ]
        var block: [UInt8] = []
        for (name, value) in fields {
            block.append(0)
            block.append(UInt8(name.utf8.count))
            block += Array(name.utf8)
            block.append(UInt8(value.utf8.count))
            block += Array(value.utf8)
        }
        return block
    }()

    static func frame(type: UInt8, flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, flags,
                UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
    }

    static func frames(_ bytes: [UInt8]) -> [(type: UInt8, stream: UInt32, length: Int)] {
        var frames: [(type: UInt8, stream: UInt32, length: Int)] = []
        var i = 0
        while i + 9 <= bytes.count {
            let n = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            let stream = UInt32(bytes[i + 5] & 0x7F) << 24 | UInt32(bytes[i + 6]) << 16 | UInt32(bytes[i + 7]) << 8 | UInt32(bytes[i + 8])
            frames.append((bytes[i + 3], stream, n))
            i += 9 + n
        }
        return frames
    }

    /// The RST_STREAM frames in `bytes`: each stream and its error code.
    static func resets(_ bytes: [UInt8]) -> [(stream: UInt32, code: UInt32)] {
        var resets: [(stream: UInt32, code: UInt32)] = []
        var i = 0
        for frame in frames(bytes) {
            if frame.type == 3, frame.length == 4 {
                let code = bytes[(i + 9)..<(i + 13)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                resets.append((frame.stream, code))
            }
            i += 9 + frame.length
        }
        return resets
    }
}

/// A TCP connection to a server that tests write raw HTTP/2 bytes to; it
/// keeps every byte the server sends.
final class RawConnection: Sendable {
    let channel: any Channel
    private let collector: ByteCollector

    private init(channel: any Channel, collector: ByteCollector) {
        self.channel = channel
        self.collector = collector
    }

    static func connect(port: Int) async throws -> RawConnection {
        let collector = ByteCollector()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, collector: collector)
    }

    var bytes: [UInt8] { collector.received.withLock { $0 } }

    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Waits up to 10 s for `done` to hold for what was received.
    func waitFor(timeout: Duration = .seconds(10), _ done: ([UInt8]) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !done(bytes) {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(done(bytes))
    }
}

/// Keeps every byte read.
final class ByteCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let received = Mutex<[UInt8]>([])
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data).readableBytesView
        received.withLock { $0 += bytes }
    }
}
