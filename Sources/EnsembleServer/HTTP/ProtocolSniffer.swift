import NIOCore
import NIOHTTP1

/// Serves gRPC and plain HTTP/1.1 on one port, as etcd does (cmux): a
/// connection that opens with the HTTP/2 preface gets the gRPC pipeline;
/// anything else gets HTTP/1.1 (`/metrics`, `/health`, `/version`). The
/// decision is made on the first bytes; they are then passed on and this
/// handler leaves the pipeline. It must be the only handler when it decides:
/// the chosen pipeline is added after it.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// The client connection preface of HTTP/2 (RFC 9113 §3.4), its first line.
    static let preface = Array("PRI * HTTP/2.0\r\n".utf8)

    private var buffered: ByteBuffer?
    private let http2: (ChannelPipeline.SynchronousOperations) throws -> Void
    private let http1: (ChannelPipeline.SynchronousOperations) throws -> Void

    init(
        http2: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void,
        http1: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void
    ) {
        self.http2 = http2
        self.http1 = http1
    }

    /// A connection still undecided on shutdown has no call to finish: it closes.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is GRPCServer.GoingAway {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if var existing = buffered {
            existing.writeBuffer(&incoming)
            buffered = existing
        } else {
            buffered = incoming
        }
        guard let bytes = buffered else { return }
        let n = min(bytes.readableBytes, Self.preface.count)
        let head = bytes.getBytes(at: bytes.readerIndex, length: n) ?? []
        let isHTTP2 = head == Array(Self.preface.prefix(n))
        // Too short to tell: wait for more.
        if isHTTP2 && n < Self.preface.count { return }
        do {
            try (isHTTP2 ? http2 : http1)(context.pipeline.syncOperations)
        } catch {
            context.close(promise: nil)
            return
        }
        buffered = nil
        context.fireChannelRead(wrapInboundOut(bytes))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
