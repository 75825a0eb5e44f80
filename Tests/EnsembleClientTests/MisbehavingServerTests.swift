import EnsembleClient
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import Synchronization
import Testing

/// The client against small hand-made servers: one that allows few streams,
/// one that sends GOAWAY, one that does not speak HTTP/2.
@Suite(.serialized, .timeLimit(.minutes(1))) struct MisbehavingServerTests {
    @Test func callsBeyondTheServersStreamLimitWaitTheirTurn() async throws {
        // The client holds the HEADERS of streams beyond the server's
        // SETTINGS_MAX_CONCURRENT_STREAMS until earlier ones close.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let peak = SlowEcho.Peak()
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let settings = [HTTP2Setting(parameter: .maxConcurrentStreams, value: 3)]
                    try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .server, initialSettings: settings))
                    try channel.pipeline.syncOperations.addHandler(SlowEcho(peak: peak))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let connection = try await GRPCConnection.connect(host: "127.0.0.1", port: port, group: group)
        // Until the server's SETTINGS arrive, the client assumes 100 streams.
        #expect(try await connection.unary("/test.Test/Echo", [0]) == [0])
        try await withThrowingTaskGroup(of: Void.self) { calls in
            for i in 0..<60 {
                calls.addTask {
                    let reply = try await connection.unary("/test.Test/Echo", [UInt8(i)], timeout: .seconds(20))
                    #expect(reply == [UInt8(i)])
                }
            }
            try await calls.waitForAll()
        }
        #expect(peak.current == 3)
        await connection.close()
        try await server.close()
        try await group.shutdownGracefully()
    }

    @Test func goAwayFailsCallsAboveTheLastStreamAndLetsTheOthersFinish() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .server))
                    try channel.pipeline.syncOperations.addHandler(GoAwayAfterFirstCall())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let connection = try await GRPCConnection.connect(host: "127.0.0.1", port: port, group: group)

        async let first = connection.unary("/test.Test/First", [1], timeout: .seconds(10))
        try await Task.sleep(for: .milliseconds(200))  // stream 1 opens first
        let second = await callError { _ = try await connection.unary("/test.Test/Second", [2], timeout: .seconds(10)) }
        #expect(second?.code == GRPCCallError.unavailableCode)
        #expect(second?.message.contains("went away before the call completed: GOAWAY") == true, "\(String(describing: second))")
        #expect(try await first == [7])
        #expect(!connection.isOpen)
        let later = await callError { _ = try await connection.unary("/test.Test/Third", [3]) }
        #expect(later == GRPCCallError(code: 14, message: "connection to 127.0.0.1:\(port) is going away: GOAWAY NO_ERROR, last stream 1"))

        await connection.close()
        try await server.close()
        try await group.shutdownGracefully()
    }

    @Test func aPeerThatDoesNotSpeakHTTP2FailsCallsWithUnavailable() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // Answers like an HTTP/1 server and keeps the connection open.
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                let reply = channel.allocator.buffer(string: "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                channel.eventLoop.scheduleTask(in: .milliseconds(100)) { channel.writeAndFlush(reply, promise: nil) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let connection = try await GRPCConnection.connect(host: "127.0.0.1", port: port, group: group)
        let failure = await callError { _ = try await connection.unary("/test.Test/Echo", [1], timeout: .seconds(10)) }
        #expect(failure?.code == GRPCCallError.unavailableCode)
        // Failed while open ("failed before the call completed") or refused
        // because the connection had already failed ("failed: sent GOAWAY …"):
        // which one depends on whether the reply beats the call.
        #expect(failure?.message.hasPrefix("connection to 127.0.0.1:\(port) failed") == true, "\(String(describing: failure))")
        #expect(!connection.isOpen)
        try await server.close()
        try await group.shutdownGracefully()
    }

    /// With keepalive, a call on a server that stops answering (a host gone,
    /// a process stopped) fails once a PING goes unanswered, instead of
    /// waiting forever; a server that answers its PINGs keeps the connection.
    @Test func anUnansweredKeepalivePingClosesTheConnection() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // Sends its SETTINGS, then reads and answers nothing.
        let silent = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                let settings = channel.allocator.buffer(bytes: [0, 0, 0, 4, 0, 0, 0, 0, 0])
                channel.eventLoop.scheduleTask(in: .milliseconds(50)) { channel.writeAndFlush(settings, promise: nil) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        var options = GRPCConnection.Options()
        options.waitForServerPreface = true
        options.keepalive = (time: .milliseconds(200), timeout: .milliseconds(300))
        let port = try #require(silent.localAddress?.port)
        let connection = try await GRPCConnection.connect(host: "127.0.0.1", port: port, group: group, options: options)
        let started = ContinuousClock.now
        let failure = await callError { _ = try await connection.unary("/test.Test/Echo", [1]) }
        #expect(failure?.code == GRPCCallError.unavailableCode)
        #expect(failure?.message.contains("no answer to a keepalive ping within 300 ms") == true, "\(String(describing: failure))")
        #expect(ContinuousClock.now - started < .seconds(5))
        try await silent.close()

        // A server that answers PINGs (NIOHTTP2 does) and holds the call.
        let answering = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .server))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let kept = try await GRPCConnection.connect(
            host: "127.0.0.1", port: try #require(answering.localAddress?.port), group: group, options: options)
        let held = await callError { _ = try await kept.unary("/test.Test/Echo", [1], timeout: .seconds(2)) }
        #expect(held?.code == 4, "the call's own deadline, not the keepalive: \(String(describing: held))")
        #expect(kept.isOpen)
        await kept.close()
        try await answering.close()
        try await group.shutdownGracefully()
    }
}

/// Holds the first call; when the second arrives, sends GOAWAY naming the
/// first as the last stream it serves, then answers the first with [7].
final class GoAwayAfterFirstCall: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame
    private var first: HTTP2StreamID?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard case .headers = frame.payload else { return }
        guard let first else {
            self.first = frame.streamID
            return
        }
        let headers: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
        var message = context.channel.allocator.buffer(capacity: 6)
        message.writeBytes([0, 0, 0, 0, 1, 7])
        for payload: HTTP2Frame.FramePayload in [
            .goAway(lastStreamID: first, errorCode: .noError, opaqueData: nil),
            .headers(.init(headers: headers)),
            .data(.init(data: .byteBuffer(message))),
            .headers(.init(headers: ["grpc-status": "0"], endStream: true)),
        ] {
            let stream = if case .goAway = payload { HTTP2StreamID.rootStream } else { first }
            context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: payload)), promise: nil)
        }
        context.flush()
    }
}

/// Echoes each call's request 5 ms after it ends, recording the most streams
/// open at once.
final class SlowEcho: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// The most streams open at once, readable from the test.
    final class Peak: Sendable {
        private let value = Atomic(0)
        var current: Int { value.load(ordering: .relaxed) }
        func record(_ open: Int) { value.max(open, ordering: .relaxed) }
    }

    private let peak: Peak
    private var requests: [HTTP2StreamID: ByteBuffer] = [:]

    init(peak: Peak) {
        self.peak = peak
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .headers:
            requests[frame.streamID] = context.channel.allocator.buffer(capacity: 0)
            peak.record(requests.count)
        case let .data(payload):
            guard case var .byteBuffer(bytes) = payload.data else { return }
            requests[frame.streamID]?.writeBuffer(&bytes)
            guard payload.endStream, let request = requests[frame.streamID] else { return }
            let stream = frame.streamID
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(5)) { [self] in
                requests[stream] = nil
                let frames: [HTTP2Frame.FramePayload] = [
                    .headers(.init(headers: [":status": "200", "content-type": "application/grpc"])),
                    .data(.init(data: .byteBuffer(request))),
                    .headers(.init(headers: ["grpc-status": "0"], endStream: true)),
                ]
                for payload in frames { context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: payload)), promise: nil) }
                context.flush()
            }
        default:
            break
        }
    }
}
