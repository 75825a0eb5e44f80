@testable import EnsembleServer
import NIOCore
import NIOEmbedded
import Testing

/// The gRPC handler driven directly, one read at a time.
@Suite struct GRPCServerHandlerTests {
    /// A message arriving one 1-byte DATA frame per read costs time in
    /// proportion to its bytes (review finding: each read copied all that had
    /// arrived of the message, so 256 KiB this way took tens of seconds).
    @Test(.timeLimit(.minutes(1))) func aMessageTrickledInOneByteFramesIsReadInLinearTime() throws {
        var router = GRPCRouter()
        router.unary["/t.T/Echo"] = .task { .success($0) }
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            GRPCServerHandler(router: GRPCRouterBox(router), maxRequestBytes: 1 << 20, keepalive: .etcd))
        let size = 256 << 10
        let message: [UInt8] = [0, UInt8(size >> 24 & 0xFF), UInt8(size >> 16 & 0xFF), UInt8(size >> 8 & 0xFF), UInt8(size & 0xFF)]
            + [UInt8](repeating: 7, count: size)
        try channel.writeInbound(ByteBuffer(bytes: Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
            + GRPCConnectionBoundsTests.frame(type: 4, flags: 0, stream: 0, [])
            + GRPCConnectionBoundsTests.frame(type: 1, flags: 0x4, stream: 1, GRPCConnectionBoundsTests.requestHeaders)))
        let started = ContinuousClock.now
        // All but the last byte: the call stays open, its message unfinished.
        for byte in message.dropLast() {
            try channel.writeInbound(ByteBuffer(bytes: GRPCConnectionBoundsTests.frame(type: 0, flags: 0, stream: 1, [byte])))
        }
        let elapsed = ContinuousClock.now - started
        #expect(elapsed < .seconds(8), "\(size) bytes in 1-byte frames, one per read, took \(elapsed)")
        _ = try? channel.finish()
    }
}
