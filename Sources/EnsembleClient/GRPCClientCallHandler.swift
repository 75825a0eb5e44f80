import NIOCore
import NIOHPACK
import NIOHTTP2

/// What a streaming call's sender writes into its stream channel.
enum GRPCClientOutbound: Sendable {
    case message([UInt8])
    /// Half-close: the client sends no more (END_STREAM on an empty DATA frame).
    case finish
    /// The caller gave up: the call ends with CANCELLED and the stream is reset.
    case cancel
}

/// One gRPC call on one HTTP/2 stream channel (the I/O shell around
/// ``GRPCResponseParser``): writes the request headers when the stream
/// activates, frames outbound messages, and hands what the parser yields to the
/// call's sink.
///
/// - Unary: the request is written at activation with END_STREAM; the response
///   completes the call's promise. The promise is also the call's single "it is
///   over" switch: a deadline or a cancellation fails it from outside, and the
///   handler then resets the stream (RST_STREAM CANCEL) so the server stops.
/// - Streaming: messages are yielded to an `AsyncThrowingStream` as they
///   arrive; the end finishes it (with a ``GRPCCallError`` unless OK).
final class GRPCClientCallHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundIn = GRPCClientOutbound
    typealias OutboundOut = HTTP2Frame.FramePayload

    enum Sink: Sendable {
        case unary(request: [UInt8], EventLoopPromise<[UInt8]>)
        case stream(AsyncThrowingStream<[UInt8], any Error>.Continuation, GRPCClientStream)
    }

    private let head: HPACKHeaders
    private let sink: Sink
    private let connection: GRPCConnection.Shared
    private var parser: GRPCResponseParser
    /// The unary response, and how many messages came (exactly one is valid).
    private var response: [UInt8]?
    private var responseCount = 0
    /// END_STREAM has been written: nothing more may be sent.
    private var requestFinished = false

    init(head: HPACKHeaders, sink: Sink, connection: GRPCConnection.Shared) {
        self.head = head
        self.sink = sink
        self.connection = connection
        self.parser = GRPCResponseParser(maxMessageBytes: connection.maxResponseBytes)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard case let .unary(_, promise) = sink else { return }
        // Ended from outside (deadline, cancellation): reset the stream.
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        promise.futureResult.whenFailure { error in
            let (handler, context) = bound.value
            guard !handler.parser.hasEnded else { return }
            _ = handler.parser.failed(error as? GRPCCallError ?? .cancelled)
            context.close(promise: nil)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        guard !parser.hasEnded else {
            // Ended before the stream opened (deadline, cancellation).
            context.close(promise: nil)
            return
        }
        context.write(wrapOutboundOut(.headers(.init(headers: head))), promise: nil)
        switch sink {
        case let .unary(request, _):
            // The request and END_STREAM in one DATA frame: a server that
            // answers before it sees a separate END_STREAM resets the stream
            // (grpc-go sends RST_STREAM NO_ERROR), and NIOHTTP2 limits how
            // many resets a connection may receive.
            requestFinished = true
            context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(frame(request, context)), endStream: true))), promise: nil)
        case let .stream(_, call):
            guard let pending = call.attach(context.channel) else {
                // Cancelled before the stream opened.
                deliver(context: context, parser.failed(.cancelled))
                context.close(promise: nil)
                return
            }
            for outbound in pending { send(context: context, outbound, promise: nil) }
        }
        context.flush()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let step: GRPCResponseParser.Step
        switch unwrapInboundIn(data) {
        case let .headers(frame):
            step = parser.receivedHeaders(frame.headers, endStream: frame.endStream)
        case let .data(frame):
            guard case let .byteBuffer(buffer) = frame.data else { return }
            step = parser.receivedData(buffer, endStream: frame.endStream)
        case let .rstStream(code):
            step = parser.receivedReset(code)
        default:
            return
        }
        deliver(context: context, step)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let closed = error as? NIOHTTP2Errors.StreamClosed {
            deliver(context: context, parser.receivedReset(closed.errorCode))
        } else {
            deliver(context: context, parser.failed(.unavailable("\(connection.target): \(error)")))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deliver(context: context, parser.failed(.unavailable(connection.whyStreamClosed)))
        context.fireChannelInactive()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        send(context: context, unwrapOutboundIn(data), promise: promise)
    }

    // MARK: -

    private func send(context: ChannelHandlerContext, _ outbound: GRPCClientOutbound, promise: EventLoopPromise<Void>?) {
        if case .cancel = outbound {
            deliver(context: context, parser.failed(.cancelled))
            if context.channel.isActive { context.close(promise: nil) }
            promise?.succeed()
            return
        }
        guard !requestFinished, !parser.hasEnded else {
            // After the half-close or the end of the call, sends are dropped (the
            // call's status tells the caller what happened).
            promise?.succeed()
            return
        }
        switch outbound {
        case let .message(message):
            context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(frame(message, context))))), promise: promise)
        case .finish:
            requestFinished = true
            let empty = context.channel.allocator.buffer(capacity: 0)
            context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(empty), endStream: true))), promise: promise)
        case .cancel:
            promise?.succeed()
        }
    }

    /// A message with its gRPC prefix: uncompressed, 4-byte big-endian length.
    private func frame(_ message: [UInt8], _ context: ChannelHandlerContext) -> ByteBuffer {
        var buffer = context.channel.allocator.buffer(capacity: message.count + 5)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(truncatingIfNeeded: message.count))
        buffer.writeBytes(message)
        return buffer
    }

    private func deliver(context: ChannelHandlerContext, _ step: GRPCResponseParser.Step) {
        switch sink {
        case let .unary(_, promise):
            responseCount += step.messages.count
            if response == nil { response = step.messages.first }
            switch step.ending {
            case nil:
                return
            case .ok:
                if responseCount == 1, let response {
                    promise.succeed(response)
                } else {
                    promise.fail(GRPCCallError.internal("a unary call got \(responseCount) response messages, not one"))
                }
            case let .failed(error):
                promise.fail(error)
            }
        case let .stream(continuation, call):
            for message in step.messages { continuation.yield(message) }
            switch step.ending {
            case nil:
                return
            case .ok:
                continuation.finish()
            case let .failed(error):
                continuation.finish(throwing: error)
            }
            call.ended()
        }
        // The server is done; if the client has not half-closed, reset the
        // stream so its resources go.
        if !requestFinished && context.channel.isActive { context.close(promise: nil) }
    }
}
