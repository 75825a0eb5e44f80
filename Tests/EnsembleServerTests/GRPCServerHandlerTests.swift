@testable import EnsembleServer
import LeanHTTP2
import NIOCore
import NIOEmbedded
import Synchronization
import Testing

/// The gRPC handler driven directly, one read at a time.
@Suite struct GRPCServerHandlerTests {
    /// A message arriving in small DATA frames, one per read, costs time in
    /// proportion to its bytes (review finding: each read copied all that had
    /// arrived of the message, so 256 KiB in 1-byte frames took 12 s). Timed
    /// against the same frames carrying small messages, which never pile up:
    /// the two cost about the same unless arrival copies the pile.
    @Test(.timeLimit(.minutes(1))) func aMessageTrickledInSmallFramesIsReadInLinearTime() throws {
        func feed(_ stream: UInt32, messageSize: Int, total: Int) throws -> Duration {
            var router = GRPCRouter()
            router.unary["/t.T/Echo"] = .task { .success($0) }
            let channel = EmbeddedChannel()
            defer { _ = try? channel.finish() }
            try channel.pipeline.syncOperations.addHandler(
                GRPCServerHandler(router: GRPCRouterBox(router), maxRequestBytes: 2 << 20, keepalive: .etcd))
            try channel.writeInbound(ByteBuffer(bytes: Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
                + GRPCConnectionBoundsTests.frame(type: 4, flags: 0, stream: 0, [])
                + GRPCConnectionBoundsTests.frame(type: 1, flags: 0x4, stream: stream, GRPCConnectionBoundsTests.requestHeaders)))
            let prefix: [UInt8] = [0, UInt8(messageSize >> 24 & 0xFF), UInt8(messageSize >> 16 & 0xFF), UInt8(messageSize >> 8 & 0xFF), UInt8(messageSize & 0xFF)]
            var bytes: [UInt8] = []
            while bytes.count < total { bytes += prefix + [UInt8](repeating: 7, count: messageSize) }
            let frames = stride(from: 0, to: bytes.count - 1, by: 256).map {
                GRPCConnectionBoundsTests.frame(type: 0, flags: 0, stream: stream, Array(bytes[$0..<min($0 + 256, bytes.count - 1)]))
            }
            let started = ContinuousClock.now
            for frame in frames { try channel.writeInbound(ByteBuffer(bytes: frame)) }
            return ContinuousClock.now - started
        }
        let total = 1 << 20
        let baseline = try feed(1, messageSize: 1024, total: total)
        let trickled = try feed(1, messageSize: total, total: total)
        #expect(trickled < baseline * 5 + .milliseconds(200), "1 MiB in 256-byte frames took \(trickled); in 1 KiB messages \(baseline)")
    }

    /// A client that grants no flow-control window (SETTINGS_INITIAL_WINDOW_SIZE
    /// 0) leaves every answer queued; past the bound, new calls are refused
    /// instead of queueing more (review finding).
    @Test func answersAClientDoesNotReadAreBoundedPerConnection() throws {
        var router = GRPCRouter()
        router.unary["/t.T/Echo"] = .direct { _, reply in reply(.success(GRPCResponse(bytes: [UInt8](repeating: 1, count: 4096)))) }
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            GRPCServerHandler(router: GRPCRouterBox(router), maxRequestBytes: 1 << 20, keepalive: .etcd, maxQueuedAnswerBytes: 10_000))
        try channel.writeInbound(ByteBuffer(bytes: Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
            + GRPCConnectionBoundsTests.frame(type: 4, flags: 0, stream: 0, [0, 4, 0, 0, 0, 0])))
        // One call per read, as calls come from a client over time.
        for stream in stride(from: UInt32(1), through: 11, by: 2) {
            try channel.writeInbound(ByteBuffer(bytes:
                GRPCConnectionBoundsTests.frame(type: 1, flags: 0x4, stream: stream, GRPCConnectionBoundsTests.requestHeaders)
                + GRPCConnectionBoundsTests.frame(type: 0, flags: 0x1, stream: stream, [0, 0, 0, 0, 1, 9])))
            channel.embeddedEventLoop.run()
        }
        var output: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { output += Array(buffer.readableBytesView) }
        // The first three (12 KiB queued) were taken; the rest refused
        // unprocessed (REFUSED_STREAM: grpc-go retries such a call itself).
        let refused = GRPCConnectionBoundsTests.resets(output).filter { $0.code == 7 }.map(\.stream)
        #expect(refused == [7, 9, 11], "\(GRPCConnectionBoundsTests.frames(output))")
        #expect(!GRPCConnectionBoundsTests.frames(output).contains { $0.type == 0 && $0.length > 0 }, "no DATA without a window")
        _ = try? channel.finish()
    }

    /// Calls whose client stopped waiting (a deadline) while their work goes
    /// on still count against the stream limit, as grpc-go's do until their
    /// handler returns; a new call past it is refused (review finding).
    @Test func callsStillBeingServedCountAgainstTheStreamLimit() throws {
        let replies = Mutex<[GRPCUnary.Reply]>([])
        var router = GRPCRouter()
        router.unary["/t.T/Echo"] = .direct { _, reply in replies.withLock { $0.append(reply) } }
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            GRPCServerHandler(
                router: GRPCRouterBox(router), maxRequestBytes: 1 << 20, keepalive: .etcd,
                configuration: .init(maxConcurrentStreams: 4)))
        try channel.writeInbound(ByteBuffer(bytes: Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
            + GRPCConnectionBoundsTests.frame(type: 4, flags: 0, stream: 0, [])))
        func call(_ stream: UInt32) throws { try Self.callWithTinyDeadline(stream, on: channel) }
        func output() throws -> [UInt8] { try Self.output(of: channel) }
        for stream in [UInt32(1), 3, 5, 7] { try call(stream) }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(5))  // every deadline passes
        _ = try output()
        #expect(replies.withLock { $0.count } == 4)
        try call(9)
        #expect(GRPCConnectionBoundsTests.resets(try output()).map { [$0.stream, $0.code] } == [[9, 7]], "refused unprocessed")
        // One handler answers (late): a slot is free again.
        replies.withLock { $0[0](.success(GRPCResponse(bytes: [1]))) }
        channel.embeddedEventLoop.run()
        _ = try output()
        try call(11)
        #expect(replies.withLock { $0.count } == 5, "the next call is served")
        _ = try? channel.finish()
    }

    /// A large answer encoded off the event loop still counts against the
    /// stream limit while it encodes (review finding: it stopped counting
    /// once handed to the encoder).
    @Test func anAnswerBeingEncodedOffTheLoopCountsAgainstTheStreamLimit() throws {
        // Encodings wait here until the test runs them (on the loop's thread,
        // as EmbeddedEventLoop needs).
        let encodings = Mutex<[@Sendable () -> Void]>([])
        var router = GRPCRouter()
        router.unary["/t.T/Echo"] = .direct { _, reply in
            var response = GRPCResponse(bytes: [1])
            response.weight = GRPCServerHandler.offLoopBytes
            reply(.success(response))
        }
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            GRPCServerHandler(
                router: GRPCRouterBox(router), maxRequestBytes: 1 << 20, keepalive: .etcd,
                configuration: .init(maxConcurrentStreams: 1), encoder: { work in encodings.withLock { $0.append(work) } }))
        try channel.writeInbound(ByteBuffer(bytes: Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
            + GRPCConnectionBoundsTests.frame(type: 4, flags: 0, stream: 0, [])))
        func call(_ stream: UInt32) throws { try Self.callWithTinyDeadline(stream, on: channel) }
        func output() throws -> [UInt8] { try Self.output(of: channel) }
        try call(1)
        #expect(encodings.withLock { $0.count } == 1)
        // The client stops waiting (its stream closes); the encoding goes on.
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(5))
        _ = try output()
        try call(3)
        #expect(GRPCConnectionBoundsTests.resets(try output()).map { [$0.stream, $0.code] } == [[3, 7]])
        // Encoded: the answer comes back to the loop, which drops it.
        for work in encodings.withLock({ $0 }) { work() }
        channel.embeddedEventLoop.run()
        _ = try output()
        try call(5)
        #expect(GRPCConnectionBoundsTests.resets(try output()).isEmpty, "the next call is served")
        _ = try? channel.finish()
    }

    /// A unary call on `stream` with grpc-timeout 1m (one millisecond), its
    /// request whole, then the loop run.
    static func callWithTinyDeadline(_ stream: UInt32, on channel: EmbeddedChannel) throws {
        let headers = GRPCConnectionBoundsTests.requestHeaders + [0, 12] + Array("grpc-timeout".utf8) + [2] + Array("1m".utf8)
        try channel.writeInbound(ByteBuffer(bytes:
            GRPCConnectionBoundsTests.frame(type: 1, flags: 0x4, stream: stream, headers)
            + GRPCConnectionBoundsTests.frame(type: 0, flags: 0x1, stream: stream, [0, 0, 0, 0, 1, 9])))
        channel.embeddedEventLoop.run()
    }

    /// Everything the handler has written so far.
    static func output(of channel: EmbeddedChannel) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += Array(buffer.readableBytesView) }
        return bytes
    }
}
