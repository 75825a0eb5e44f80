import NIOCore

/// Tells an HTTP/2 connection from another protocol on a shared port by its
/// first bytes: a connection whose first `length` bytes match the client
/// preface (RFC 9113 §3.4) gets the handlers `http2` adds, any other those
/// `other` adds. The bytes read are then passed on and this handler leaves
/// the pipeline; it must be last when it decides.
///
/// Used where etcd uses cmux: the client port (gRPC beside HTTP/1.1) and the
/// peer port (forwarded calls beside Raft frames, where 4 bytes suffice).
public final class PrefaceSniffer: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias Configure = (ChannelPipeline.SynchronousOperations) throws -> Void

    /// The client connection preface of HTTP/2.
    public static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    private let expected: [UInt8]
    private var buffered: ByteBuffer?
    private let http2: Configure?
    private let other: Configure
    private let closesOn: (Any) -> Bool

    /// `length`: how many preface bytes decide. `http2` nil: every connection
    /// gets `other`. `closesOn`: user events that close a connection still
    /// undecided (a server shutting down).
    public init(length: Int, http2: Configure?, other: @escaping Configure, closesOn: @escaping (Any) -> Bool = { _ in false }) {
        self.expected = Array(Self.preface.prefix(length))
        self.http2 = http2
        self.other = other
        self.closesOn = closesOn
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if closesOn(event) {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if var existing = buffered {
            existing.writeBuffer(&incoming)
            buffered = existing
        } else {
            buffered = incoming
        }
        guard let bytes = buffered else { return }
        let n = min(bytes.readableBytes, expected.count)
        let isHTTP2 = bytes.getBytes(at: bytes.readerIndex, length: n) == Array(expected.prefix(n))
        // Too short to tell: wait for more.
        if isHTTP2 && n < expected.count { return }
        do {
            if isHTTP2, let http2 {
                try http2(context.pipeline.syncOperations)
            } else {
                try other(context.pipeline.syncOperations)
            }
        } catch {
            context.close(promise: nil)
            return
        }
        buffered = nil
        context.fireChannelRead(wrapInboundOut(bytes))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
