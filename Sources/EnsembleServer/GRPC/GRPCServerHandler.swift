import Dispatch
import EnsembleClient
import LeanHTTP2
import NIOCore
import NIOHPACK

/// Serves every gRPC call of one connection: the I/O shell of the server side
/// of `HTTP2Connection` (HTTP/2 itself, in LeanHTTP2) that keeps each stream's
/// call in a dictionary.
///
/// Per call it reads `:path` and `grpc-timeout`, splits request DATA into
/// messages, dispatches to the router's unary or streaming handler, and
/// writes response headers, messages and `grpc-status` trailers (a
/// trailers-only response when the call fails before any message).
///
/// Writes are batched: answers produced on other threads (the node loop) go
/// through the connection's ``GRPCOutbox`` and are written together with one
/// write and flush; answers written while reading go out once at the end of
/// the read burst.
///
/// A deadline from `grpc-timeout` ends the call with DEADLINE_EXCEEDED; work
/// already started (a proposal) is not withdrawn, as in etcd. An answer that
/// is still waiting for the client's flow-control window at the deadline is
/// dropped (RST_STREAM CANCEL).
final class GRPCServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct Call {
        enum Kind {
            case unary(GRPCUnary, message: [UInt8]?, extra: Bool)
            case streaming(any GRPCStreamReceiver)
            /// Answered or refused: whatever else the client sends is ignored.
            case done
        }
        var kind: Kind
        let path: String
        var metrics: (any GRPCMethodObserver)?
        let started: ContinuousClock.Instant
        var reader: GRPCMessageReader
        var headersSent = false
        var deadline: Scheduled<Void>?
        /// A unary call sent with `hasleader: true`: asked before it is served
        /// (``GRPCRouter/leaderRequired``).
        var leaderCheck: GRPCRouter.LeaderCheck?
        /// Request bytes held for it: a message not yet whole, and a unary
        /// call's message until the request ends (``heldRequestBytes``).
        var held = 0
    }

    private let router: GRPCRouterBox
    private let maxRequestBytes: Int
    private let keepalive: GRPCKeepalive
    /// When something was last read: a keepalive PING's answer, or anything.
    private var lastRead = NIODeadline.now()
    private var keepaliveCheck: Scheduled<Void>?
    private var connection: HTTP2Connection
    private var events: [HTTP2Connection.Event] = []
    private var calls: [UInt32: Call] = [:]
    /// Request bytes held for the calls on this connection. HTTP/2 windows are
    /// credited as data arrives (as grpc-go's reads into a message's buffer
    /// credit them), so without this bound a client could park a nearly
    /// whole message on each of thousands of streams.
    private var heldRequestBytes = 0
    /// Unary calls handed to their handler and not yet answered by it,
    /// including those the client stopped waiting for (a deadline, a reset):
    /// their work goes on, so they count against the stream limit as
    /// grpc-go's do until their handler returns (review finding: a tiny
    /// deadline freed the slot at once, so the limit bounded nothing).
    private var dispatched: Set<UInt32> = []
    /// Deadlines of answered calls whose output still waits for the client's
    /// window: each resets its stream if it passes first, and is cancelled
    /// once the stream is gone (checked at each flush).
    private var keptDeadlines: [UInt32: Scheduled<Void>] = [:]
    /// The bound on ``heldRequestBytes``: a call that would pass it ends with
    /// RESOURCE_EXHAUSTED. 128 requests of the largest size (256 MiB with
    /// etcd's limits) may arrive interleaved on one connection.
    private let maxHeldRequestBytes: Int
    /// Answer bytes a client may leave waiting for flow-control window on
    /// one connection (HTTP/2 lets it grant none): past this, new calls are
    /// refused (REFUSED_STREAM) until it reads. Well above what a slow but
    /// reading client holds (a large Range, watch streams at their 16 MiB
    /// bound). Review finding: a client that set its initial window to 0
    /// could make the server hold an answer on each of 4,096 streams for the
    /// connection's life.
    private let maxQueuedAnswerBytes: Int
    private var outbox: GRPCOutbox?
    /// The connection closes once what is being written is out.
    private var closeScheduled = false
    /// Where large answers are encoded (``offLoopBytes``).
    private let encoder: @Sendable (@escaping @Sendable () -> Void) -> Void

    init(
        router: GRPCRouterBox, maxRequestBytes: Int, keepalive: GRPCKeepalive = .etcd,
        configuration: HTTP2Connection.Configuration = .init(), maxQueuedAnswerBytes: Int = 512 << 20,
        encoder: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void = { DispatchQueue.global().async(execute: $0) }
    ) {
        self.router = router
        self.encoder = encoder
        self.maxRequestBytes = maxRequestBytes
        self.maxHeldRequestBytes = 128 * maxRequestBytes
        self.maxQueuedAnswerBytes = maxQueuedAnswerBytes
        self.keepalive = keepalive
        var configuration = configuration
        configuration.pingPolicy = .init(minimumInterval: .nanoseconds(keepalive.minimumTime.nanosecondsSaturated))
        self.connection = HTTP2Connection(role: .server, configuration: configuration)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        outbox = GRPCOutbox(eventLoop: context.eventLoop) { items in
            let (handler, context) = bound.value
            handler.write(items, context: context)
        }
        // The server's SETTINGS go out at once (§3.4).
        if context.channel.isActive { flushNow(context: context) }
        scheduleKeepalive(context: context, in: keepalive.interval)
    }

    /// Pings a connection silent for the keepalive interval; closes it if the
    /// ping, too, meets silence.
    private func scheduleKeepalive(context: ChannelHandlerContext, in delay: Duration) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        keepaliveCheck = context.eventLoop.scheduleTask(in: .nanoseconds(delay.nanosecondsSaturated)) {
            let (handler, context) = bound.value
            handler.checkKeepalive(context: context)
        }
    }

    private func checkKeepalive(context: ChannelHandlerContext) {
        let interval = TimeAmount.nanoseconds(keepalive.interval.nanosecondsSaturated)
        let silent = NIODeadline.now() - lastRead
        guard silent >= interval else {
            return scheduleKeepalive(context: context, in: .nanoseconds((interval - silent).nanoseconds))
        }
        let pinged = NIODeadline.now()
        connection.sendPing(UInt64(pinged.uptimeNanoseconds))
        flushNow(context: context)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        keepaliveCheck = context.eventLoop.scheduleTask(in: .nanoseconds(keepalive.timeout.nanosecondsSaturated)) {
            let (handler, context) = bound.value
            if handler.lastRead < pinged {
                context.close(promise: nil)
            } else {
                handler.scheduleKeepalive(context: context, in: handler.keepalive.interval)
            }
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        flushNow(context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        events.removeAll(keepingCapacity: true)
        let now = NIODeadline.now()
        lastRead = now
        connection.receive(&bytes, into: &events, now: now)
        for event in events {
            switch event {
            case let .opened(stream, headers, endStream):
                open(context: context, stream: stream, headers: headers)
                if endStream { requestEnded(context: context, stream: stream) }
            case let .headers(stream, _, _):
                // The request's trailers carry nothing gRPC needs; they end it.
                requestEnded(context: context, stream: stream)
            case let .data(stream, buffer, endStream):
                received(context: context, stream: stream, buffer)
                if endStream { requestEnded(context: context, stream: stream) }
            case .goAway:
                break  // the client opens nothing more; its calls may finish
            case let .reset(stream, _):
                if let call = calls.removeValue(forKey: stream) {
                    heldRequestBytes -= call.held
                    call.deadline?.cancel()
                    // Counted as grpc-go's interceptor counts a cancelled call,
                    // so started - handled stays the calls in flight.
                    call.metrics?.handled(code: GRPCStatus.cancelled.code, duration: .now - call.started)
                    if case let .streaming(receiver) = call.kind { receiver.closed() }
                }
            }
        }
        // The events hold slices of the read buffer; let NIO have it back.
        events.removeAll(keepingCapacity: true)
        if connection.failure != nil { flushNow(context: context) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushNow(context: context)
        context.fireChannelReadComplete()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        keepaliveCheck?.cancel()
        keepaliveCheck = nil
        cancelKeptDeadlines()
        // The outbox's drain closure holds this handler and its context.
        outbox?.close()
        outbox = nil
        for promise in connection.close() { promise.succeed() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        keepaliveCheck?.cancel()
        keepaliveCheck = nil
        cancelKeptDeadlines()
        let open = calls
        calls.removeAll()
        heldRequestBytes = 0
        outbox?.close()
        outbox = nil
        // Messages held back by flow control will not be sent: their senders
        // (GRPCServerStream.queuedBytes) must hear so.
        for promise in connection.close() { promise.succeed() }
        for call in open.values {
            call.deadline?.cancel()
            call.metrics?.handled(code: GRPCStatus.cancelled.code, duration: .now - call.started)
            if case let .streaming(receiver) = call.kind { receiver.closed() }
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is GRPCServer.GoingAway {
            connection.goAway()
            // Streams (watches, keep-alives) would never end by themselves:
            // they end as etcd's do when it stops, and clientv3 retries them
            // on another member.
            for (stream, call) in calls {
                if case .streaming = call.kind { end(context: context, stream: stream, .serverStopped) }
            }
            flushNow(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// A client that does not read stops being read: nothing it sends (PINGs,
    /// SETTINGS, calls) can pile up answers in the server's memory.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        context.channel.setOption(.autoRead, value: writable).whenFailure { _ in }
        // The peer took our bytes (its TCP acknowledged them): it is alive,
        // though nothing was read while reading was paused.
        if writable { lastRead = .now() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: - Inbound

    private func open(context: ChannelHandlerContext, stream: UInt32, headers: HPACKHeaders) {
        // One pass, exact names: HTTP2Connection has checked that they are
        // lowercase (`HPACKHeaders.first(name:)` would scan, case-blind, per name).
        var path = ""
        var method = ""
        var contentType = ""
        var timeoutValue: String?
        var requiresLeader = false
        var clientAPIVersion: String?
        for (name, value, _) in headers {
            // By length first: string compares per header per call add up.
            switch name.utf8.count {
            case 5 where name == ":path": path = value
            case 7 where name == ":method": method = value
            case 9 where name == "hasleader": requiresLeader = value == "true"
            case 12 where name == "content-type": contentType = value
            case 12 where name == "grpc-timeout": timeoutValue = value
            case 18 where name == "client-api-version": clientAPIVersion = value
            default: break
            }
        }
        var call = Call(
            kind: .done, path: path, started: .now, reader: GRPCMessageReader(maxMessageBytes: maxRequestBytes))
        // A deadline beyond a year is no deadline (the largest, 99999999H, is 11,000 years).
        if let value = timeoutValue, let timeout = parseGRPCTimeout(Substring(value)),
            timeout < .seconds(365 * 86_400)
        {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            call.deadline = context.eventLoop.scheduleTask(in: .nanoseconds(timeout.nanosecondsSaturated)) {
                let (handler, context) = bound.value
                handler.keptDeadlines[stream] = nil
                if handler.calls[stream] != nil {
                    handler.end(context: context, stream: stream, .deadlineExceeded)
                }
                // Output still waiting for a window the client does not give
                // (an answer, or a stream's messages before these trailers):
                // the client has given up on it.
                if handler.connection.isOpen(stream) { handler.connection.sendReset(stream: stream, .cancel) }
                handler.flushNow(context: context)
            }
        }
        // grpc-go's checks before a call starts, with its HTTP statuses and words.
        guard method == "POST" else {
            calls[stream] = call
            let message = "Received a HEADERS frame with :method \"\(method)\" which should be POST"
            return end(context: context, stream: stream, .internal(message), httpStatus: 405)
        }
        guard Self.isGRPC(contentType: contentType) else {
            calls[stream] = call
            let message = "invalid gRPC request content-type \"\(contentType)\""
            return end(context: context, stream: stream, GRPCStatus(code: 3, message: message), httpStatus: 415)
        }
        // Past the connection's bounds the call is refused unprocessed, as
        // grpc-go's server refuses a stream over its limit: REFUSED_STREAM
        // tells the client nothing ran, so grpc-go retries it by itself
        // (once, on any connection); RESOURCE_EXHAUSTED it would not retry,
        // nor would clientv3 for a write.
        guard dispatched.count < connection.configuration.maxConcurrentStreams,
            connection.queuedDataBytes <= maxQueuedAnswerBytes
        else {
            call.deadline?.cancel()
            connection.sendReset(stream: stream, .refusedStream)
            return
        }
        let route = router.route(path)
        call.metrics = route?.metrics
        call.metrics?.started(clientAPIVersion: clientAPIVersion)
        switch route?.handler {
        case let .unary(unary)?:
            if let check = route?.leaderRequired, requiresLeader { call.leaderCheck = check }
            call.kind = .unary(unary, message: nil, extra: false)
            calls[stream] = call
        case let .streaming(streaming)? where outbox != nil:
            guard let outbox else { return }
            calls[stream] = call
            let receiver = streaming(GRPCServerStream(outbox: outbox, stream: stream, requiresLeader: requiresLeader))
            calls[stream]?.kind = .streaming(receiver)
        default:
            calls[stream] = call
            end(context: context, stream: stream, .unimplemented(path))
        }
    }

    private func received(context: ChannelHandlerContext, stream: UInt32, _ buffer: ByteBuffer) {
        // Taken out, not copied: a copy would share the reader's buffer with
        // the dictionary's, and appending would then copy all that has
        // arrived of the message, for every read that brings one more DATA
        // frame of it (quadratic: a client trickling a large message in tiny
        // frames could pin the event loop). Every path below puts it back.
        guard var call = calls.removeValue(forKey: stream) else { return }
        let messages: [[UInt8]]
        do {
            messages = try call.reader.append(buffer.readableBytesView)
        } catch let .tooLarge(length) {
            calls[stream] = call
            // grpc-go's words, which etcd's clients see from etcd.
            end(context: context, stream: stream, GRPCStatus(code: 8, message: "grpc: received message larger than max (\(length) vs. \(maxRequestBytes))"))
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
        if let metrics = call.metrics {
            for message in messages { metrics.received(bytes: message.count) }
        }
        // A unary call keeps its first message until the request ends.
        var held = call.reader.pendingBytes
        if case let .unary(_, message, _) = call.kind { held += (message ?? messages.first)?.count ?? 0 }
        heldRequestBytes += held - call.held
        call.held = held
        guard heldRequestBytes <= maxHeldRequestBytes else {
            calls[stream] = call
            end(context: context, stream: stream, GRPCStatus(
                code: 8, message: "request data waiting on this connection exceeds \(maxHeldRequestBytes) bytes"))
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
            for message in messages where calls.index(forKey: stream) != nil { receiver.received(message) }
        case .done:
            calls[stream] = call
        }
    }

    private func requestEnded(context: ChannelHandlerContext, stream: UInt32) {
        guard let call = calls[stream] else { return }
        switch call.kind {
        case let .unary(handler, message, extra):
            calls[stream]?.kind = .done
            // The message goes to its handler (or is refused): no longer held here.
            heldRequestBytes -= call.held
            calls[stream]?.held = 0
            guard call.reader.pendingBytes == 0 else {
                end(context: context, stream: stream, .internal("gRPC message length mismatch"))
                return
            }
            guard let message, !extra else {
                end(context: context, stream: stream, GRPCStatus(code: 12, message: "a unary call takes exactly one request message"))
                return
            }
            if let check = call.leaderCheck, let refusal = check(call.path, message) {
                end(context: context, stream: stream, refusal)
                return
            }
            let outbox = self.outbox
            dispatched.insert(stream)
            handler.serve(message) { result in outbox?.push(.reply(stream, result)) }
        case let .streaming(receiver):
            receiver.clientFinished()
        case .done:
            break
        }
    }

    // MARK: - Outbound

    /// `:status: 200` and `content-type: application/grpc`, encoded once.
    private static let responseHeaders: ByteBuffer = {
        var block = ByteBuffer()
        block.writeInteger(HPACKLiterals.status200)
        HPACKLiterals.append(name: "content-type", value: "application/grpc", to: &block)
        return block
    }()
    private static let okTrailers: ByteBuffer = {
        var block = ByteBuffer()
        HPACKLiterals.append(name: "grpc-status", value: "0", to: &block)
        return block
    }()

    /// Writes what the outbox collected, then flushes once.
    private func write(_ items: [GRPCOutbox.Item], context: ChannelHandlerContext) {
        for item in items {
            switch item {
            case let .reply(stream, result):
                guard calls.index(forKey: stream) != nil else {
                    dispatched.remove(stream)
                    continue
                }
                if case let .success(response) = result, response.weight >= Self.offLoopBytes {
                    // Counted against the stream limit until encoded: its work goes on.
                    encodeOffLoop(response, stream: stream, context: context)
                    continue
                }
                dispatched.remove(stream)
                switch result.flatMap({ $0.encode() }) {
                case let .success(bytes):
                    sendMessage(context: context, stream: stream, bytes, promise: nil)
                    end(context: context, stream: stream, .ok)
                case let .failure(status):
                    end(context: context, stream: stream, status)
                }
            case let .message(stream, bytes, sent):
                sendMessage(context: context, stream: stream, bytes, promise: sent)
            case let .encoded(stream, makes, sent):
                guard calls.index(forKey: stream) != nil else {
                    sent?.succeed()
                    continue
                }
                sendMessages(context: context, stream: stream, makes.compactMap { $0() }, promise: sent)
            case let .end(stream, status):
                end(context: context, stream: stream, status)
            case let .abort(stream):
                guard let call = calls.removeValue(forKey: stream) else { continue }
                heldRequestBytes -= call.held
                call.deadline?.cancel()
                call.metrics?.handled(code: 8, duration: .now - call.started)  // ResourceExhausted
                connection.sendReset(stream: stream, .enhanceYourCalm)
                if case let .streaming(receiver) = call.kind { receiver.closed() }
            }
        }
        flushNow(context: context)
    }

    /// Responses holding this many bytes of keys and values or more are
    /// encoded on a dispatch queue: a 100 MB Range encoded on the event loop
    /// held up every other connection on that loop for a few hundred ms.
    static let offLoopBytes = 1 << 20

    /// Encodes `response` off the event loop, then sends it and ends the
    /// call there (unless the call ended meanwhile: deadline, reset).
    private func encodeOffLoop(_ response: GRPCResponse, stream: UInt32, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        encoder {
            let encoded = response.encode()
            loop.execute {
                let (handler, context) = bound.value
                handler.dispatched.remove(stream)
                guard handler.calls[stream] != nil else { return }
                switch encoded {
                case let .success(bytes):
                    handler.sendMessage(context: context, stream: stream, bytes, promise: nil)
                    handler.end(context: context, stream: stream, .ok)
                case let .failure(status):
                    handler.end(context: context, stream: stream, status)
                }
                handler.flushNow(context: context)
            }
        }
    }

    private func cancelKeptDeadlines() {
        for deadline in keptDeadlines.values { deadline.cancel() }
        keptDeadlines = [:]
    }

    /// Writes everything the connection produced, in one write, and flushes;
    /// closes the connection after a connection error's GOAWAY.
    private func flushNow(context: ChannelHandlerContext) {
        if !keptDeadlines.isEmpty {
            for (stream, deadline) in keptDeadlines where !connection.isOpen(stream) {
                deadline.cancel()
                keptDeadlines[stream] = nil
            }
        }
        // After a connection error's GOAWAY; or going away, once every call is done.
        let closing = !closeScheduled
            && (connection.failure != nil || (connection.goingAway && calls.isEmpty && !connection.hasStreams))
        let channel = context.channel
        if closing {
            closeScheduled = true
            // A client that never reads would hold the write, and the connection, forever.
            context.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        }
        guard let (bytes, written) = connection.takeOutput() else {
            if closing { channel.close(promise: nil) }
            return
        }
        var promise: EventLoopPromise<Void>?
        if !written.isEmpty || closing {
            let all = context.eventLoop.makePromise(of: Void.self)
            // Closed only once the last bytes (a GOAWAY, an answer) are out:
            // closing at once would drop what the socket has not taken yet.
            all.futureResult.whenComplete { _ in
                for p in written { p.succeed() }
                if closing { channel.close(promise: nil) }
            }
            promise = all
        }
        context.writeAndFlush(wrapOutboundOut(bytes), promise: promise)
    }

    private func sendMessage(context: ChannelHandlerContext, stream: UInt32, _ message: [UInt8], promise: EventLoopPromise<Void>?) {
        sendMessages(context: context, stream: stream, CollectionOfOne(message), promise: promise)
    }

    /// Messages of one call in one DATA frame (gRPC frames each with its
    /// length; HTTP/2 does not care where they start).
    private func sendMessages(
        context: ChannelHandlerContext, stream: UInt32, _ messages: some RandomAccessCollection<[UInt8]>, promise: EventLoopPromise<Void>?
    ) {
        // The call is looked at in place: copying it out (path, reader,
        // deadline, receiver…) costs a retain and release each, per message.
        guard let index = calls.index(forKey: stream), !messages.isEmpty else {
            promise?.succeed()
            return
        }
        // The length prefix is 32 bits and clients take at most 2^31 - 1
        // bytes: grpc-go's server (etcd's) refuses to send more, in these
        // words. What comes before such a message goes out.
        let fitting = messages.prefix { $0.count <= Self.maxSendBytes }
        if !fitting.isEmpty {
            if !calls.values[index].headersSent {
                calls.values[index].headersSent = true
                connection.sendHeaders(stream: stream, block: Self.responseHeaders)
            }
            var buffer = context.channel.allocator.buffer(capacity: fitting.reduce(0) { $0 + $1.count + 5 })
            for message in fitting {
                calls.values[index].metrics?.sent(bytes: message.count)
                buffer.writeInteger(UInt8(0))
                buffer.writeInteger(UInt32(message.count))
                buffer.writeBytes(message)
            }
            connection.sendData(stream: stream, buffer, promise: fitting.count == messages.count ? promise : nil)
        }
        if fitting.count < messages.count, let tooLarge = messages[fitting.endIndex...].first {
            promise?.succeed()
            end(context: context, stream: stream, GRPCStatus(
                code: 8, message: "grpc: trying to send message larger than max (\(tooLarge.count) vs. \(Self.maxSendBytes))"))
        }
    }

    /// The largest message sent (etcd's `MaxSendMsgSize`, math.MaxInt32).
    static let maxSendBytes = Int(Int32.max)

    /// `application/grpc`, alone or with a subtype (`+proto`) or parameters.
    static func isGRPC(contentType: String) -> Bool {
        let base = "application/grpc"
        guard contentType.hasPrefix(base) else { return false }
        let rest = contentType.utf8.dropFirst(base.utf8.count)
        return rest.isEmpty || rest.first == UInt8(ascii: "+") || rest.first == UInt8(ascii: ";")
    }

    /// Ends the call once: trailers after a response, or trailers-only (with
    /// `httpStatus`, for a request refused before it started). The call
    /// leaves the table; later frames of its stream are ignored.
    private func end(context: ChannelHandlerContext, stream: UInt32, _ status: GRPCStatus, httpStatus: Int = 200) {
        guard let call = calls.removeValue(forKey: stream) else { return }
        heldRequestBytes -= call.held
        defer {
            // An answer held back by flow control keeps the deadline: what a
            // client that grants no window leaves queued goes when it passes.
            if let deadline = call.deadline {
                if connection.isOpen(stream) { keptDeadlines[stream] = deadline } else { deadline.cancel() }
            }
        }
        let receiver: (any GRPCStreamReceiver)?
        if case let .streaming(r) = call.kind { receiver = r } else { receiver = nil }
        if status.code == 0 && call.headersSent {
            connection.sendHeaders(stream: stream, block: Self.okTrailers, endStream: true)
        } else {
            var block = call.headersSent ? ByteBuffer() : Self.responseHeaders
            if httpStatus != 200 && !call.headersSent {
                block = ByteBuffer()
                HPACKLiterals.append(name: ":status", value: String(httpStatus), to: &block)
                HPACKLiterals.append(name: "content-type", value: "application/grpc", to: &block)
            }
            HPACKLiterals.append(name: "grpc-status", value: String(status.code), to: &block)
            if !status.message.isEmpty {
                HPACKLiterals.append(name: "grpc-message", value: GRPCStatus.percentEncode(status.message), to: &block)
            }
            connection.sendHeaders(stream: stream, block: block, endStream: true)
        }
        call.metrics?.handled(code: status.code, duration: .now - call.started)
        receiver?.closed()
    }
}
