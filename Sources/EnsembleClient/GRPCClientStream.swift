import NIOCore

/// A streaming call (client-, server- or bidirectional-streaming alike), made
/// by ``GRPCConnection/stream(_:)``.
///
/// - ``send(_:)`` and ``finish()`` may be called from any thread, at once
///   too: they queue behind the call's opening, and messages go out in call
///   order.
/// - ``messages`` yields the server's messages in order and ends when the
///   server's trailers arrive: normally for `grpc-status: 0`, by throwing a
///   ``GRPCCallError`` otherwise, or when the connection is lost (14
///   UNAVAILABLE).
/// - Once the call has ended, sends are dropped; the ending tells why.
/// - Ending the iteration of ``messages`` early (a `break`, a cancelled task)
///   or calling ``cancel()`` resets the stream (RST_STREAM CANCEL).
///
/// Inbound messages are buffered without bound until they are read, so a
/// consumer is expected to keep reading (the client credits the stream's
/// HTTP/2 window as messages arrive, not as they are read, so flow control
/// does not hold a fast server back from a slow consumer here).
public final class GRPCClientStream: Sendable {
    /// The server's messages, ending with the call.
    public let messages: AsyncThrowingStream<[UInt8], any Error>

    /// Where sends go; nil for a call refused at once.
    private let outbox: GRPCClientOutbox?
    private let stream: UInt32

    init(messages: AsyncThrowingStream<[UInt8], any Error>, outbox: GRPCClientOutbox?, stream: UInt32) {
        self.messages = messages
        self.outbox = outbox
        self.stream = stream
    }

    /// Sends one message.
    public func send(_ message: [UInt8]) {
        outbox?.push(.message(stream, ByteBuffer(grpcMessage: message)))
    }

    /// Half-closes the call: the client sends no more. The server may go on
    /// sending until it ends the call.
    public func finish() {
        outbox?.push(.finish(stream))
    }

    /// Resets the stream; ``messages`` ends with 1 CANCELLED.
    public func cancel() {
        outbox?.push(.cancel(stream))
    }
}
