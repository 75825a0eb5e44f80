import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

/// A small gRPC server over HTTP/2 (h2c) on SwiftNIO, for unary calls: each
/// request stream is collected, dispatched to the router, and answered with
/// response headers, one length-prefixed message and `grpc-status` trailers.
///
/// First milestone of the lean gRPC layer (shared/reference/performance.md):
/// it uses NIOHTTP2's per-stream child channels; streaming calls, deadlines,
/// keepalive policy and the frame-level handler come next.
public final class GRPCServer: Sendable {
    private let group: any EventLoopGroup
    private let router: GRPCRouterBox
    /// Requests larger than this are refused (etcd: 1.5 MiB plus gRPC overhead).
    public let maxRequestBytes: Int

    public init(group: any EventLoopGroup, router: GRPCRouter, maxRequestBytes: Int = 2 << 20) {
        self.group = group
        self.router = GRPCRouterBox(router)
        self.maxRequestBytes = maxRequestBytes
    }

    /// A server whose routes are installed later (the port must be known first).
    public init(group: any EventLoopGroup, router: GRPCRouterBox, maxRequestBytes: Int = 2 << 20) {
        self.group = group
        self.router = router
        self.maxRequestBytes = maxRequestBytes
    }

    /// Listens on `host:port` (0 picks a free port); returns the channel.
    public func listen(host: String, port: Int) async throws -> any Channel {
        let router = self.router
        let limit = maxRequestBytes
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.configureHTTP2Pipeline(mode: .server, inboundStreamInitializer: { stream in
                    stream.eventLoop.makeCompletedFuture {
                        try stream.pipeline.syncOperations.addHandler(UnaryCallHandler(router: router, maxRequestBytes: limit))
                    }
                }).map { _ in () }
            }
            .bind(host: host, port: port)
            .get()
    }
}

/// One HTTP/2 stream carrying one unary call.
final class UnaryCallHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private let router: GRPCRouterBox
    private let maxRequestBytes: Int
    private var path = ""
    private var body: [UInt8] = []
    private var answered = false

    init(router: GRPCRouterBox, maxRequestBytes: Int) {
        self.router = router
        self.maxRequestBytes = maxRequestBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .headers(headers):
            if let value = headers.headers.first(name: ":path") { path = value }
            if headers.endStream { finish(context: context) }
        case let .data(payload):
            if case let .byteBuffer(buffer) = payload.data {
                if body.count + buffer.readableBytes > maxRequestBytes {
                    respond(context: context, .failure(GRPCStatus(code: 8, message: "etcdserver: request is too large")))
                    return
                }
                body.append(contentsOf: buffer.readableBytesView)
            }
            if payload.endStream { finish(context: context) }
        default:
            break
        }
    }

    private func finish(context: ChannelHandlerContext) {
        guard !answered else { return }
        guard let handler = router.current.unary[path] else {
            respond(context: context, .failure(.unimplemented(path)))
            return
        }
        // The gRPC message: 1 byte compressed flag, 4 bytes length, message.
        guard body.count >= 5, body[0] == 0 else {
            respond(context: context, .failure(.internal(body.first == 1 ? "compression is not supported" : "malformed gRPC message")))
            return
        }
        let length = Int(body[1]) << 24 | Int(body[2]) << 16 | Int(body[3]) << 8 | Int(body[4])
        guard length == body.count - 5 else {
            respond(context: context, .failure(.internal("gRPC message length mismatch")))
            return
        }
        let message = Array(body[5...])
        let promise = context.eventLoop.makePromise(of: Result<[UInt8], GRPCStatus>.self)
        promise.completeWithTask { await handler(message) }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenSuccess { result in
            let (handler, context) = bound.value
            handler.respond(context: context, result)
        }
    }

    private func respond(context: ChannelHandlerContext, _ result: Result<[UInt8], GRPCStatus>) {
        guard !answered else { return }
        answered = true
        var headers = HPACKHeaders()
        headers.add(name: ":status", value: "200")
        headers.add(name: "content-type", value: "application/grpc")
        switch result {
        case let .success(message):
            context.write(wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
            var buffer = context.channel.allocator.buffer(capacity: message.count + 5)
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(UInt32(message.count))
            buffer.writeBytes(message)
            context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(buffer)))), promise: nil)
            var trailers = HPACKHeaders()
            trailers.add(name: "grpc-status", value: "0")
            context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))), promise: nil)
        case let .failure(status):
            // Trailers-only response.
            headers.add(name: "grpc-status", value: String(status.code))
            headers.add(name: "grpc-message", value: Self.percentEncode(status.message))
            context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: headers, endStream: true))), promise: nil)
        }
    }

    /// gRPC's grpc-message encoding: percent-encode bytes outside printable ASCII and '%'.
    static func percentEncode(_ message: String) -> String {
        var out = ""
        for byte in message.utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != 0x25 {
                out.append(Character(Unicode.Scalar(byte)))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
