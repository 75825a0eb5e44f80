import EnsembleClient
import NIOCore
import NIOHPACK
import NIOHTTP2

/// Serves every gRPC call of one HTTP/2 connection, at the frame level: it
/// sits after `NIOHTTP2Handler` (no per-stream child channels) and keeps each
/// stream's call in a dictionary.
///
/// Per call it reads `:path` and `grpc-timeout`, splits request DATA into
/// messages, dispatches to the router's unary or streaming handler, and
/// writes response headers, messages and `grpc-status` trailers (a
/// trailers-only response when the call fails before any message).
///
/// Writes are batched: answers produced on other threads (the node loop) go
/// through the connection's ``GRPCOutbox`` and are written together with one
/// flush; answers written while reading are flushed once at the end of the
/// read burst.
///
/// Flow control: NIOHTTP2 holds back outbound DATA beyond the peer's windows;
/// the inbound windows, the connection's and each stream's, are this
/// handler's (without a multiplexer nothing else sends WINDOW_UPDATE): it
/// credits a window back to full once NIOHTTP2 reports it half used
/// (`NIOHTTP2WindowUpdatedEvent`, which also counts DATA that NIOHTTP2 itself
/// discarded, say for a stream just reset).
///
/// A deadline from `grpc-timeout` ends the call with DEADLINE_EXCEEDED; work
/// already started (a proposal) is not withdrawn, as in etcd.
final class GRPCServerHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// The stream window this server advertises (SETTINGS_INITIAL_WINDOW_SIZE).
    static let streamWindow = 1 << 20
    /// The connection window, raised from HTTP/2's initial 65,535 bytes.
    static let connectionWindow = 8 << 20
    /// How many calls a client may have open on one connection.
    static let maxConcurrentStreams = 4096
    static var settings: HTTP2Settings {
        [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: maxConcurrentStreams),
            HTTP2Setting(parameter: .initialWindowSize, value: streamWindow),
            HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize),
        ]
    }

    private struct Call {
        enum Kind {
            case unary(GRPCUnary, message: [UInt8]?, extra: Bool)
            case streaming(any GRPCStreamReceiver)
            /// Answered or refused: whatever else the client sends is ignored.
            case done
        }
        var kind: Kind
        let path: String
        let started: ContinuousClock.Instant
        var reader: GRPCMessageReader
        var headersSent = false
        var ended = false
        var deadline: Scheduled<Void>?
    }

    private let router: GRPCRouterBox
    private let maxRequestBytes: Int
    private var calls: [HTTP2StreamID: Call] = [:]
    private var outbox: GRPCOutbox?
    private var needsFlush = false

    init(router: GRPCRouterBox, maxRequestBytes: Int) {
        self.router = router
        self.maxRequestBytes = maxRequestBytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        outbox = GRPCOutbox(eventLoop: context.eventLoop) { items in
            let (handler, context) = bound.value
            handler.write(items, context: context)
        }
        let raise = Self.connectionWindow - 65_535
        context.writeAndFlush(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: raise))), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case let .headers(headers):
            if calls[frame.streamID] == nil {
                open(context: context, stream: frame.streamID, headers: headers.headers)
            }
            // Trailers from the client carry nothing gRPC needs; endStream matters.
            if headers.endStream { requestEnded(context: context, stream: frame.streamID) }
        case let .data(payload):
            if case let .byteBuffer(buffer) = payload.data {
                received(context: context, stream: frame.streamID, buffer)
            }
            if payload.endStream { requestEnded(context: context, stream: frame.streamID) }
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let update = event as? NIOHTTP2WindowUpdatedEvent, let window = update.inboundWindowSize {
            windowShrank(context: context, update.streamID, to: window)
        } else if let closed = event as? StreamClosedEvent, let call = calls.removeValue(forKey: closed.streamID) {
            call.deadline?.cancel()
            if case let .streaming(receiver) = call.kind { receiver.closed() }
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Credits a window back to full once it is half used, so requests and
    /// long-lived streams (watch, lease keep-alive) never stall.
    private func windowShrank(context: ChannelHandlerContext, _ stream: HTTP2StreamID, to window: Int) {
        let target: Int
        if stream == .rootStream {
            target = Self.connectionWindow
        } else {
            guard calls[stream]?.ended == false else { return }
            target = Self.streamWindow
        }
        guard window <= target / 2 else { return }
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .windowUpdate(windowSizeIncrement: target - window))), promise: nil)
        needsFlush = true
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // The outbox's drain closure holds this handler and its context.
        outbox?.close()
        outbox = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        let open = calls
        calls.removeAll()
        outbox?.close()
        outbox = nil
        for call in open.values {
            call.deadline?.cancel()
            if case let .streaming(receiver) = call.kind { receiver.closed() }
        }
        context.fireChannelInactive()
    }

    // MARK: - Inbound

    private func open(context: ChannelHandlerContext, stream: HTTP2StreamID, headers: HPACKHeaders) {
        let path = headers.first(name: ":path") ?? ""
        var call = Call(
            kind: .done, path: path, started: .now, reader: GRPCMessageReader(maxMessageBytes: maxRequestBytes))
        // A deadline beyond a year is no deadline (the largest, 99999999H, is 11,000 years).
        if let value = headers.first(name: "grpc-timeout"), let timeout = parseGRPCTimeout(Substring(value)),
            timeout < .seconds(365 * 86_400)
        {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            call.deadline = context.eventLoop.scheduleTask(in: .nanoseconds(timeout.nanosecondsSaturated)) {
                let (handler, context) = bound.value
                handler.end(context: context, stream: stream, .deadlineExceeded)
                handler.flushNow(context: context)
            }
        }
        let routes = router.current
        if let unary = routes.unary[path] {
            call.kind = .unary(unary, message: nil, extra: false)
            calls[stream] = call
        } else if let streaming = routes.streaming[path], let outbox {
            calls[stream] = call
            let receiver = streaming(GRPCServerStream(outbox: outbox, stream: stream))
            calls[stream]?.kind = .streaming(receiver)
        } else {
            calls[stream] = call
            end(context: context, stream: stream, .unimplemented(path))
        }
    }

    private func received(context: ChannelHandlerContext, stream: HTTP2StreamID, _ buffer: ByteBuffer) {
        guard var call = calls[stream] else { return }
        let messages: [[UInt8]]
        do {
            messages = try call.reader.append(buffer.readableBytesView)
        } catch .tooLarge {
            calls[stream] = call
            end(context: context, stream: stream, GRPCStatus(code: 8, message: "etcdserver: request is too large"))
            return
        } catch .compressed {
            calls[stream] = call
            end(context: context, stream: stream, .internal("compression is not supported"))
            return
        } catch {
            calls[stream] = call
            end(context: context, stream: stream, .internal("malformed gRPC message"))
            return
        }
        switch call.kind {
        case let .unary(handler, message, extra):
            var message = message
            var extra = extra
            for m in messages {
                if message == nil { message = m } else { extra = true }
            }
            call.kind = .unary(handler, message: message, extra: extra)
            calls[stream] = call
        case let .streaming(receiver):
            calls[stream] = call
            for message in messages where calls[stream]?.ended == false { receiver.received(message) }
        case .done:
            calls[stream] = call
        }
    }

    private func requestEnded(context: ChannelHandlerContext, stream: HTTP2StreamID) {
        guard let call = calls[stream] else { return }
        switch call.kind {
        case let .unary(handler, message, extra):
            calls[stream]?.kind = .done
            guard call.reader.pendingBytes == 0 else {
                end(context: context, stream: stream, .internal("gRPC message length mismatch"))
                return
            }
            guard let message, !extra else {
                end(context: context, stream: stream, GRPCStatus(code: 12, message: "a unary call takes exactly one request message"))
                return
            }
            let outbox = self.outbox
            handler.serve(message) { result in outbox?.push(.reply(stream, result)) }
        case let .streaming(receiver):
            if !call.ended { receiver.clientFinished() }
        case .done:
            break
        }
    }

    // MARK: - Outbound

    private static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
    private static let okTrailers: HPACKHeaders = ["grpc-status": "0"]

    /// Writes what the outbox collected, then flushes once.
    private func write(_ items: [GRPCOutbox.Item], context: ChannelHandlerContext) {
        for item in items {
            switch item {
            case let .reply(stream, result):
                guard calls[stream]?.ended == false else { continue }
                switch result.flatMap({ $0.encode() }) {
                case let .success(bytes):
                    sendMessage(context: context, stream: stream, bytes, promise: nil)
                    end(context: context, stream: stream, .ok)
                case let .failure(status):
                    end(context: context, stream: stream, status)
                }
            case let .message(stream, bytes, sent):
                sendMessage(context: context, stream: stream, bytes, promise: sent)
            case let .end(stream, status):
                end(context: context, stream: stream, status)
            }
        }
        flushNow(context: context)
    }

    private func flushNow(context: ChannelHandlerContext) {
        needsFlush = false
        context.flush()
    }

    private func sendMessage(context: ChannelHandlerContext, stream: HTTP2StreamID, _ message: [UInt8], promise: EventLoopPromise<Void>?) {
        guard let call = calls[stream], !call.ended else {
            promise?.succeed()
            return
        }
        if !call.headersSent {
            calls[stream]?.headersSent = true
            context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: Self.responseHeaders)))), promise: nil)
        }
        var buffer = context.channel.allocator.buffer(capacity: message.count + 5)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(message.count))
        buffer.writeBytes(message)
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(buffer))))), promise: promise)
        needsFlush = true
    }

    /// Ends the call once: trailers after a response, or trailers-only.
    private func end(context: ChannelHandlerContext, stream: HTTP2StreamID, _ status: GRPCStatus) {
        guard var call = calls[stream], !call.ended else { return }
        call.ended = true
        call.deadline?.cancel()
        call.deadline = nil
        let receiver: (any GRPCStreamReceiver)?
        if case let .streaming(r) = call.kind { receiver = r } else { receiver = nil }
        call.kind = .done
        var trailers: HPACKHeaders
        if status.code == 0 && call.headersSent {
            trailers = Self.okTrailers
        } else {
            trailers = call.headersSent ? HPACKHeaders() : Self.responseHeaders
            trailers.add(name: "grpc-status", value: String(status.code))
            if !status.message.isEmpty {
                trailers.add(name: "grpc-message", value: GRPCStatus.percentEncode(status.message))
            }
        }
        call.headersSent = true
        calls[stream] = call
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: trailers, endStream: true)))), promise: nil)
        needsFlush = true
        router.observer?.handled(path: call.path, streaming: receiver != nil, code: status.code, duration: .now - call.started)
        receiver?.closed()
    }
}
