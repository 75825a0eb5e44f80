import LeanHTTP2
import NIOCore

/// Runs every call of one connection: the I/O shell of the client side of
/// `HTTP2Connection` (HTTP/2 itself, in LeanHTTP2), keeping each stream's
/// ``GRPCClientCall`` in a dictionary.
///
/// - Calls arrive through the connection's ``GRPCClientOutbox``: each opens
///   with HEADERS (plus the request and END_STREAM for a unary call), and a
///   drain writes everything queued with one write and flush. Streams beyond
///   the server's SETTINGS_MAX_CONCURRENT_STREAMS and DATA beyond its windows
///   wait in the HTTP/2 connection, which also credits the receive windows back.
/// - Response frames go through the call's ``GRPCResponseParser``; the call's
///   end resolves its sink on the event loop and removes it. A call that ends
///   while its stream is still open (a deadline, a cancellation, a malformed
///   response, a server that ends a stream the client has not half-closed)
///   resets it with RST_STREAM CANCEL.
/// - GOAWAY from the server: new calls are refused, calls above the last
///   stream ID (and calls still waiting for a stream) fail with 14
///   UNAVAILABLE, the others may finish. A connection error this side finds
///   (its GOAWAY with an error code) or a socket error closes the connection;
///   losing it fails every open call with 14. A stream error ends only its call.
final class GRPCClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let shared: GRPCConnection.Shared
    private let outbox: GRPCClientOutbox
    private var connection: HTTP2Connection
    private var events: [HTTP2Connection.Event] = []
    private var calls: [UInt32: GRPCClientCall] = [:]
    private var context: ChannelHandlerContext?
    /// The connection closes once its GOAWAY is out.
    private var closeScheduled = false

    /// Completed by the server's first bytes; failed if the connection ends
    /// first or they do not come in time
    /// (``GRPCConnection/Options/waitForServerPreface``).
    private var greeting: EventLoopPromise<Void>?
    private let greetingTimeout: TimeAmount

    /// ``GRPCConnection/Options/keepalive``, and when bytes last arrived.
    private let keepalive: (time: TimeAmount, timeout: TimeAmount)?
    private var lastRead = NIODeadline.now()
    private var keepaliveTimer: Scheduled<Void>?

    init(
        shared: GRPCConnection.Shared, outbox: GRPCClientOutbox, configuration: HTTP2Connection.Configuration,
        greeting: (EventLoopPromise<Void>, TimeAmount)? = nil, keepalive: (time: Duration, timeout: Duration)? = nil
    ) {
        self.shared = shared
        self.outbox = outbox
        self.connection = HTTP2Connection(role: .client, configuration: configuration)
        self.greeting = greeting?.0
        self.greetingTimeout = greeting?.1 ?? .zero
        self.keepalive = keepalive.map {
            (.nanoseconds($0.time.nanosecondsSaturated), .nanoseconds($0.timeout.nanosecondsSaturated))
        }
    }

    /// Checks in `delay` whether the connection has been silent for the
    /// keepalive time with calls open; if so pings, and closes it when the
    /// timeout passes with still nothing read.
    private func scheduleKeepalive(context: ChannelHandlerContext, in delay: TimeAmount) {
        guard let keepalive else { return }
        keepaliveTimer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            // With no call open there is nothing to keep alive: look again later.
            if calls.isEmpty { return scheduleKeepalive(context: context, in: keepalive.time) }
            let silent = NIODeadline.now() - lastRead
            guard silent >= keepalive.time else {
                return scheduleKeepalive(context: context, in: keepalive.time - silent)
            }
            let pinged = NIODeadline.now()
            connection.sendPing(UInt64(pinged.uptimeNanoseconds))
            flush(context: context)
            keepaliveTimer = context.eventLoop.assumeIsolated().scheduleTask(in: keepalive.timeout) { [self] in
                guard lastRead < pinged else { return scheduleKeepalive(context: context, in: keepalive.time) }
                shared.end(.failed("no answer to a keepalive ping within \(keepalive.timeout.nanoseconds / 1_000_000) ms"))
                context.close(promise: nil)
            }
        }
    }

    private func settleGreeting(_ failure: GRPCCallError?) {
        guard let greeting else { return }
        self.greeting = nil
        if let failure { greeting.fail(failure) } else { greeting.succeed() }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if greeting != nil {
            context.eventLoop.assumeIsolated().scheduleTask(in: greetingTimeout) { [self] in
                guard greeting != nil else { return }
                settleGreeting(.unavailable("no HTTP/2 preface from \(shared.target)"))
                context.close(promise: nil)
            }
        }
        // The preface and SETTINGS go out as soon as the socket is up.
        if context.channel.isActive { flush(context: context) }
        if let keepalive { scheduleKeepalive(context: context, in: keepalive.time) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        keepaliveTimer?.cancel()
        keepaliveTimer = nil
        settleGreeting(.unavailable("connection to \(shared.target) closed before its HTTP/2 preface"))
        failAll(context: context)
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        flush(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        settleGreeting(.unavailable("connection to \(shared.target) closed before its HTTP/2 preface"))
        failAll(context: context)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        settleGreeting(nil)
        if keepalive != nil { lastRead = .now() }
        events.removeAll(keepingCapacity: true)
        connection.receive(&bytes, into: &events)
        for event in events {
            switch event {
            case let .headers(id, headers, endStream):
                guard let call = calls[id] else { continue }
                deliver(context: context, id, call, call.parser.receivedHeaders(headers, endStream: endStream))
            case let .data(id, buffer, endStream):
                guard let call = calls[id] else { continue }
                deliver(context: context, id, call, call.parser.receivedData(buffer, endStream: endStream))
            case let .reset(id, code):
                guard let call = calls[id] else { continue }
                deliver(context: context, id, call, call.parser.receivedReset(code))
            case let .goAway(last, code):
                shared.end(.goAway("GOAWAY \(code), last stream \(last)"))
                // The server will not serve these; the connection has dropped them.
                for (id, call) in calls where id > last {
                    deliver(context: context, id, call, call.parser.failed(.unavailable(shared.whyStreamClosed)))
                }
            case .opened:
                break  // servers open no streams
            }
        }
        // The events hold slices of the read buffer; let NIO have it back.
        events.removeAll(keepingCapacity: true)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush(context: context)
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        shared.end(.failed("\(error)"))
        context.close(promise: nil)
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
                connection.sendData(stream: id, message, promise: nil)
            case let .finish(id):
                guard let call = calls[id], !call.requestFinished else { continue }
                call.requestFinished = true
                connection.sendData(stream: id, ByteBuffer(), endStream: true, promise: nil)
            case let .cancel(id):
                end(context: context, id, .cancelled)
            }
        }
        flush(context: context)
    }

    private func open(context: ChannelHandlerContext, _ id: UInt32, _ request: GRPCClientCall.Request) {
        let call = GRPCClientCall(sink: request.sink, maxResponseBytes: shared.maxResponseBytes)
        calls[id] = call
        if let deadline = request.deadline {
            call.deadline = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
                end(context: context, id, .deadlineExceeded)
                flush(context: context)
            }
        }
        connection.open(stream: id, block: request.head, endStream: false)
        if let message = request.message {
            // The request and END_STREAM in one DATA frame: a server that
            // answers before it sees a separate END_STREAM resets the stream
            // (grpc-go sends RST_STREAM NO_ERROR).
            call.requestFinished = true
            connection.sendData(stream: id, message, endStream: true, promise: nil)
        }
    }

    /// Ends a call from the client's side (deadline, cancellation).
    private func end(context: ChannelHandlerContext, _ id: UInt32, _ error: GRPCCallError) {
        guard let call = calls[id] else { return }
        deliver(context: context, id, call, call.parser.failed(error))
    }

    /// Hands `step` to the call; once it has ended, forgets it and resets the
    /// stream if the stream is still open.
    private func deliver(
        context: ChannelHandlerContext, _ id: UInt32, _ call: GRPCClientCall, _ step: GRPCResponseParser.Step
    ) {
        guard call.deliver(step) else { return }
        calls[id] = nil
        if connection.isOpen(id) { connection.sendReset(stream: id, .cancel) }
    }

    /// Writes whatever the connection produced, in one write; closes the
    /// connection after a connection error's GOAWAY.
    private func flush(context: ChannelHandlerContext) {
        if let failure = connection.failure { shared.end(.failed("sent GOAWAY \(failure)")) }
        let channel = context.channel
        let closing = connection.failure != nil && !closeScheduled
        if closing { closeScheduled = true }
        guard let (bytes, written) = connection.takeOutput() else {
            if closing { channel.close(promise: nil) }
            return
        }
        for promise in written { promise.succeed() }
        if closing {
            // Closed once the GOAWAY is out, not before; after 2 s regardless
            // (a server that reads nothing would hold it, and its calls, forever).
            context.writeAndFlush(wrapOutboundOut(bytes)).whenComplete { _ in channel.close(promise: nil) }
            context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        }
    }

    // MARK: - Ending

    /// The connection is gone: every open and queued call fails with 14.
    private func failAll(context: ChannelHandlerContext) {
        let queued = outbox.close()
        let open = calls
        calls.removeAll()
        for promise in connection.close() { promise.succeed() }
        let error = GRPCCallError.unavailable(shared.whyStreamClosed)
        for call in open.values { _ = call.deliver(call.parser.failed(error)) }
        for case let .open(_, request) in queued { request.sink.fail(error) }
    }
}
