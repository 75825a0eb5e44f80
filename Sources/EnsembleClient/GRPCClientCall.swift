import NIOCore

/// One call in progress on a connection, owned by its ``GRPCClientHandler``
/// and touched only on the connection's event loop: the response parser, the
/// caller's sink, and what has been sent and received on the stream.
///
/// ``deliver(_:)`` hands what the parser yields to the sink; the call's end
/// resolves the sink exactly once (a unary promise, or finishing a stream's
/// messages).
final class GRPCClientCall {
    /// Where the response goes.
    enum Sink: Sendable {
        case unary(EventLoopPromise<[UInt8]>)
        case stream(AsyncThrowingStream<[UInt8], any Error>.Continuation)
    }

    /// What a caller hands to the event loop to start a call.
    struct Request: Sendable {
        /// The request headers, an HPACK block (``GRPCConnection``).
        var head: ByteBuffer
        /// A unary call's request, length-prefixed; sent with END_STREAM.
        var message: ByteBuffer?
        var deadline: NIODeadline?
        var sink: Sink
    }

    let sink: Sink
    var parser: GRPCResponseParser
    /// The unary response, and how many messages came (exactly one is valid).
    private var response: [UInt8]?
    private var responseCount = 0
    /// END_STREAM has been handed to the connection: nothing more may be sent.
    var requestFinished = false
    var deadline: Scheduled<Void>?

    init(sink: Sink, maxResponseBytes: Int) {
        self.sink = sink
        self.parser = GRPCResponseParser(maxMessageBytes: maxResponseBytes)
    }

    /// Delivers messages and the end, if `step` has one; returns true when
    /// the call has ended.
    func deliver(_ step: GRPCResponseParser.Step) -> Bool {
        switch sink {
        case let .unary(promise):
            responseCount += step.messages.count
            if response == nil { response = step.messages.first }
            switch step.ending {
            case nil:
                return false
            case .ok:
                if responseCount == 1, let response {
                    promise.succeed(response)
                } else {
                    promise.fail(GRPCCallError.internal("a unary call got \(responseCount) response messages, not one"))
                }
            case let .failed(error):
                promise.fail(error)
            }
        case let .stream(continuation):
            for message in step.messages { continuation.yield(message) }
            switch step.ending {
            case nil:
                return false
            case .ok:
                continuation.finish()
            case let .failed(error):
                continuation.finish(throwing: error)
            }
        }
        deadline?.cancel()
        deadline = nil
        return true
    }
}

extension GRPCClientCall.Sink {
    /// Ends a call that never reached the wire.
    func fail(_ error: GRPCCallError) {
        switch self {
        case let .unary(promise): promise.fail(error)
        case let .stream(continuation): continuation.finish(throwing: error)
        }
    }
}

extension ByteBuffer {
    /// A gRPC message with its prefix: uncompressed, 4-byte big-endian length.
    init(grpcMessage message: [UInt8]) {
        self = ByteBufferAllocator().buffer(capacity: message.count + 5)
        writeInteger(UInt8(0))
        writeInteger(UInt32(truncatingIfNeeded: message.count))
        writeBytes(message)
    }
}
