import NIOCore
import NIOHPACK
import NIOHTTP2

/// Serves one gRPC call on one HTTP/2 stream: reads `:path` and
/// `grpc-timeout`, splits the request DATA into messages, dispatches to the
/// router's unary or streaming handler, and writes response headers, messages
/// and `grpc-status` trailers (a trailers-only response when the call fails
/// before any message).
///
/// Unary: the request must be exactly one message; the handler runs as a task
/// and its answer is written when it completes. Streaming: messages go to the
/// ``GRPCStreamReceiver`` as they arrive, and the handler answers through its
/// ``GRPCServerStream`` (which writes ``GRPCOutbound`` into this handler).
///
/// A deadline from `grpc-timeout` ends the call with DEADLINE_EXCEEDED; work
/// already started (a proposal) is not withdrawn, as in etcd.
final class GRPCCallHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = GRPCOutbound
    typealias OutboundOut = HTTP2Frame.FramePayload

    private enum Call {
        case awaitingHeaders
        case unary(GRPCRouter.Unary, messages: [[UInt8]])
        case streaming(any GRPCStreamReceiver)
        /// The request could not be served; the rest of it is ignored.
        case refused
    }

    private let router: GRPCRouterBox
    private var reader: GRPCMessageReader
    private var call = Call.awaitingHeaders
    private var headersSent = false
    private var ended = false
    private var deadline: Scheduled<Void>?
    private var path = ""
    private var started = ContinuousClock.now

    init(router: GRPCRouterBox, maxRequestBytes: Int) {
        self.router = router
        self.reader = GRPCMessageReader(maxMessageBytes: maxRequestBytes)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .headers(frame):
            if case .awaitingHeaders = call {
                open(context: context, headers: frame.headers)
            }
            // Trailers from the client carry nothing gRPC needs; endStream matters.
            if frame.endStream { requestEnded(context: context) }
        case let .data(frame):
            if case let .byteBuffer(buffer) = frame.data { received(context: context, buffer) }
            if frame.endStream { requestEnded(context: context) }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        ended = true
        if case let .streaming(receiver) = call {
            call = .refused
            receiver.closed()
        }
        context.fireChannelInactive()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case let .message(message): sendMessage(context: context, message, promise: promise)
        case let .end(status):
            end(context: context, status)
            promise?.succeed()
        }
    }

    // MARK: - Inbound

    private func open(context: ChannelHandlerContext, headers: HPACKHeaders) {
        path = headers.first(name: ":path") ?? ""
        started = ContinuousClock.now
        if let value = headers.first(name: "grpc-timeout"), let timeout = parseGRPCTimeout(Substring(value)) {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            deadline = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.nanoseconds))) {
                let (handler, context) = bound.value
                handler.end(context: context, .deadlineExceeded)
            }
        }
        let routes = router.current
        if let unary = routes.unary[path] {
            call = .unary(unary, messages: [])
        } else if let streaming = routes.streaming[path] {
            call = .streaming(streaming(GRPCServerStream(channel: context.channel)))
        } else {
            end(context: context, .unimplemented(path))
        }
    }

    private func received(context: ChannelHandlerContext, _ buffer: ByteBuffer) {
        let messages: [[UInt8]]
        do {
            messages = try reader.append(buffer.readableBytesView)
        } catch .tooLarge {
            end(context: context, GRPCStatus(code: 8, message: "etcdserver: request is too large"))
            return
        } catch .compressed {
            end(context: context, .internal("compression is not supported"))
            return
        } catch {
            end(context: context, .internal("malformed gRPC message"))
            return
        }
        switch call {
        case let .unary(handler, already):
            call = .unary(handler, messages: already + messages)
        case let .streaming(receiver):
            for message in messages where !ended { receiver.received(message) }
        case .awaitingHeaders, .refused:
            break
        }
    }

    private func requestEnded(context: ChannelHandlerContext) {
        switch call {
        case let .unary(handler, messages):
            call = .refused
            guard reader.pendingBytes == 0 else {
                end(context: context, .internal("gRPC message length mismatch"))
                return
            }
            guard messages.count == 1, let message = messages.first else {
                end(context: context, GRPCStatus(code: 12, message: "a unary call takes exactly one request message"))
                return
            }
            let promise = context.eventLoop.makePromise(of: Result<[UInt8], GRPCStatus>.self)
            promise.completeWithTask { await handler(message) }
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            promise.futureResult.whenSuccess { result in
                let (handler, context) = bound.value
                switch result {
                case let .success(response):
                    handler.sendMessage(context: context, response, promise: nil)
                    handler.end(context: context, .ok)
                case let .failure(status):
                    handler.end(context: context, status)
                }
            }
        case let .streaming(receiver):
            if !ended { receiver.clientFinished() }
        case .awaitingHeaders, .refused:
            break
        }
    }

    // MARK: - Outbound

    private func responseHeaders() -> HPACKHeaders {
        var headers = HPACKHeaders()
        headers.add(name: ":status", value: "200")
        headers.add(name: "content-type", value: "application/grpc")
        return headers
    }

    private func sendMessage(context: ChannelHandlerContext, _ message: [UInt8], promise: EventLoopPromise<Void>?) {
        guard !ended else {
            promise?.succeed()
            return
        }
        if !headersSent {
            headersSent = true
            context.write(wrapOutboundOut(.headers(.init(headers: responseHeaders()))), promise: nil)
        }
        var buffer = context.channel.allocator.buffer(capacity: message.count + 5)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(message.count))
        buffer.writeBytes(message)
        context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(buffer)))), promise: promise)
    }

    /// Ends the call once: trailers after a response, or trailers-only.
    private func end(context: ChannelHandlerContext, _ status: GRPCStatus) {
        guard !ended else { return }
        ended = true
        deadline?.cancel()
        var trailers = headersSent ? HPACKHeaders() : responseHeaders()
        trailers.add(name: "grpc-status", value: String(status.code))
        if !status.message.isEmpty {
            trailers.add(name: "grpc-message", value: GRPCStatus.percentEncode(status.message))
        }
        headersSent = true
        context.writeAndFlush(wrapOutboundOut(.headers(.init(headers: trailers, endStream: true))), promise: nil)
        var streaming = false
        if case .streaming = call { streaming = true }
        router.observer?.handled(path: path, streaming: streaming, code: status.code, duration: ContinuousClock.now - started)
        if case let .streaming(receiver) = call {
            call = .refused
            receiver.closed()
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
