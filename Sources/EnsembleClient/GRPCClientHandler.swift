import NIOCore
import NIOHPACK
import NIOHTTP2

/// Runs every call of one connection at the HTTP/2 frame level: it sits after
/// `NIOHTTP2Handler` (no per-stream child channels) and keeps each stream's
/// ``GRPCClientCall`` in a dictionary.
///
/// - Calls arrive through the connection's ``GRPCClientOutbox``: each opens
///   with HEADERS (plus the request and END_STREAM for a unary call), and a
///   drain writes everything queued with one flush. NIOHTTP2 holds back
///   streams beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS and DATA
///   beyond its windows.
/// - Response frames go through the call's ``GRPCResponseParser``; the call's
///   end resolves its sink on the event loop and removes it. A call that ends
///   before both sides have ended the stream (a deadline, a cancellation, a
///   malformed response, a server that ends a stream the client has not
///   half-closed) resets it with RST_STREAM CANCEL.
/// - Flow control is this handler's (without a multiplexer nothing else sends
///   WINDOW_UPDATE): the connection window is raised at start, and it and each
///   open call's stream window are credited back once half is consumed, going
///   by NIOHTTP2's own window counts, so bytes of frames it drops count too.
/// - GOAWAY: new calls are refused, calls above the last stream ID fail with
///   14 UNAVAILABLE, the others may finish. A connection error (NIOHTTP2 sends
///   GOAWAY with an error code, see ``GRPCCloseAfterGoAway``) or a socket
///   error closes the connection; losing it fails every open call with 14.
///   A stream error ends only its call.
final class GRPCClientHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    private let shared: GRPCConnection.Shared
    private let outbox: GRPCClientOutbox
    private let streamWindow: Int
    private let connectionWindow: Int
    private var calls: [HTTP2StreamID: GRPCClientCall] = [:]
    private var context: ChannelHandlerContext?
    private var needsFlush = false
    /// NIOHTTP2 sent GOAWAY for a connection error: the error that follows ends the connection.
    private var failing = false

    init(shared: GRPCConnection.Shared, outbox: GRPCClientOutbox, streamWindow: Int, connectionWindow: Int) {
        self.shared = shared
        self.outbox = outbox
        self.streamWindow = streamWindow
        self.connectionWindow = connectionWindow
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { raiseConnectionWindow(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failAll(context: context)
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        // NIOHTTP2 has written the preface and SETTINGS before this.
        raiseConnectionWindow(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(context: context)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case let .headers(headers):
            guard let call = calls[frame.streamID] else { return }
            if headers.endStream { call.responseFinished = true }
            let step = call.parser.receivedHeaders(headers.headers, endStream: headers.endStream)
            deliver(context: context, frame.streamID, call, step)
        case let .data(payload):
            guard let call = calls[frame.streamID], case let .byteBuffer(buffer) = payload.data else { return }
            if payload.endStream { call.responseFinished = true }
            let step = call.parser.receivedData(buffer, endStream: payload.endStream)
            deliver(context: context, frame.streamID, call, step)
        case let .rstStream(code):
            guard let call = calls[frame.streamID] else { return }
            call.streamClosed = true
            deliver(context: context, frame.streamID, call, call.parser.receivedReset(code))
        case let .goAway(lastStreamID, errorCode, _):
            shared.end(.goAway("GOAWAY \(errorCode), last stream \(Int(lastStreamID))"))
            // The server will not serve these; NIOHTTP2 closes (or never opens) them.
            for (id, call) in calls where id > lastStreamID {
                call.streamClosed = true
                deliver(context: context, id, call, call.parser.failed(.unavailable(shared.whyStreamClosed)))
            }
        default:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let update = event as? NIOHTTP2WindowUpdatedEvent {
            if let window = update.inboundWindowSize { windowShrank(context: context, update.streamID, to: window) }
        } else if let closed = event as? StreamClosedEvent, let call = calls[closed.streamID] {
            // Closed without the server's status reaching the call: reset by
            // NIOHTTP2 for a stream error, or dropped with the connection.
            call.streamClosed = true
            let step = closed.reason.map { call.parser.receivedReset($0) }
                ?? call.parser.failed(.unavailable(shared.whyStreamClosed))
            deliver(context: context, closed.streamID, call, step)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let streamError = error as? NIOHTTP2Errors.StreamError {
            // A frame of this call could not be written (NIOHTTP2 wraps only
            // outbound stream errors); the call ends, and its stream is reset
            // in case it is open.
            if let call = calls[streamError.streamID] {
                let failure = GRPCCallError.unavailable("\(shared.target): \(streamError.baseError)")
                deliver(context: context, streamError.streamID, call, call.parser.failed(failure))
            }
        } else if failing || error is IOError {
            shared.end(.failed("\(error)"))
            context.close(promise: nil)
        }
        // Anything else is an inbound stream error: NIOHTTP2 has reset that
        // stream, and its StreamClosedEvent ends the call.
        context.fireErrorCaught(error)
    }

    // MARK: - Outbound

    /// Writes what the outbox collected, then flushes once.
    func drained(_ items: [GRPCClientOutbox.Item]) {
        guard let context else { return }
        // Decided once: GOAWAY and close() are seen on this loop between drains.
        let refusal = shared.isEnding || !context.channel.isActive ? shared.whyRefused : nil
        for item in items {
            switch item {
            case let .open(id, request):
                if let refusal {
                    request.sink.fail(.unavailable(refusal))
                } else {
                    open(context: context, id, request)
                }
            case let .message(id, message):
                guard let call = calls[id], !call.requestFinished else { continue }
                write(context, id, .data(.init(data: .byteBuffer(message))))
            case let .finish(id):
                guard let call = calls[id], !call.requestFinished else { continue }
                call.requestFinished = true
                let empty = context.channel.allocator.buffer(capacity: 0)
                write(context, id, .data(.init(data: .byteBuffer(empty), endStream: true)))
            case let .cancel(id):
                end(context: context, id, .cancelled)
            }
        }
        needsFlush = false
        context.flush()
    }

    private func open(context: ChannelHandlerContext, _ id: HTTP2StreamID, _ request: GRPCClientCall.Request) {
        let call = GRPCClientCall(sink: request.sink, maxResponseBytes: shared.maxResponseBytes)
        // In the dictionary first: a write can fail the call re-entrantly (errorCaught).
        calls[id] = call
        if let deadline = request.deadline {
            call.deadline = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
                end(context: context, id, .deadlineExceeded)
                flushIfNeeded(context: context)
            }
        }
        write(context, id, .headers(.init(headers: request.head)))
        if let message = request.message, calls[id] != nil {
            // The request and END_STREAM in one DATA frame: a server that
            // answers before it sees a separate END_STREAM resets the stream
            // (grpc-go sends RST_STREAM NO_ERROR), and NIOHTTP2 limits how
            // many resets a connection may receive.
            call.requestFinished = true
            write(context, id, .data(.init(data: .byteBuffer(message), endStream: true)))
        }
    }

    /// Ends a call from the client's side (deadline, cancellation).
    private func end(context: ChannelHandlerContext, _ id: HTTP2StreamID, _ error: GRPCCallError) {
        guard let call = calls[id] else { return }
        deliver(context: context, id, call, call.parser.failed(error))
    }

    /// Hands `step` to the call; once it has ended, forgets it and resets the
    /// stream if the stream is still open.
    private func deliver(
        context: ChannelHandlerContext, _ id: HTTP2StreamID, _ call: GRPCClientCall, _ step: GRPCResponseParser.Step
    ) {
        guard call.deliver(step) else { return }
        calls[id] = nil
        if call.needsReset {
            call.streamClosed = true
            write(context, id, .rstStream(.cancel))
            needsFlush = true
        }
    }

    private func write(_ context: ChannelHandlerContext, _ stream: HTTP2StreamID, _ payload: HTTP2Frame.FramePayload) {
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: payload)), promise: nil)
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        guard needsFlush else { return }
        needsFlush = false
        context.flush()
    }

    // MARK: - Flow control

    private func raiseConnectionWindow(context: ChannelHandlerContext) {
        let raise = connectionWindow - 65_535
        guard raise > 0 else { return }
        write(context, .rootStream, .windowUpdate(windowSizeIncrement: raise))
        context.flush()
    }

    /// NIOHTTP2 reports a receive window after DATA arrived (or settings
    /// changed); credit it back to full once half is used.
    private func windowShrank(context: ChannelHandlerContext, _ id: HTTP2StreamID, to window: Int) {
        let target: Int
        if id == .rootStream {
            target = connectionWindow
        } else {
            // Only open calls: an ended call's stream is closed or being reset.
            guard calls[id] != nil else { return }
            target = streamWindow
        }
        guard window <= target / 2 else { return }
        let increment = min(target - window, Int(Int32.max))
        write(context, id, .windowUpdate(windowSizeIncrement: increment))
        needsFlush = true
    }

    // MARK: - Ending

    /// The connection is gone: every open and queued call fails with 14.
    private func failAll(context: ChannelHandlerContext) {
        let queued = outbox.close()
        let open = calls
        calls.removeAll()
        let error = GRPCCallError.unavailable(shared.whyStreamClosed)
        for call in open.values {
            call.streamClosed = true
            _ = call.deliver(call.parser.failed(error))
        }
        for case let .open(_, request) in queued { request.sink.fail(error) }
    }

    /// NIOHTTP2 wrote GOAWAY with an error code: it found a connection error,
    /// which it reports next through `errorCaught`, but it leaves the channel
    /// open. Closing it fails the calls still open instead of leaving them
    /// waiting forever.
    fileprivate func wroteGoAway(_ errorCode: HTTP2ErrorCode) {
        failing = true
        guard let context else { return }
        context.eventLoop.assumeIsolated().execute { [self] in
            shared.end(.failed("sent GOAWAY \(errorCode)"))
            self.context?.close(promise: nil)
        }
    }
}

/// Tells the ``GRPCClientHandler`` when NIOHTTP2 sends GOAWAY for a connection
/// error (it calls this for every frame it writes, on the event loop).
struct GRPCCloseAfterGoAway: NIOHTTP2FrameDelegate {
    let handler: GRPCClientHandler

    func wroteFrame(_ frame: HTTP2Frame) {
        guard case let .goAway(_, errorCode, _) = frame.payload, errorCode != .noError else { return }
        handler.wroteGoAway(errorCode)
    }
}
