import NIOCore
import Synchronization

/// A streaming call (client-, server- or bidirectional-streaming alike), made
/// by ``GRPCConnection/stream(_:)``.
///
/// - ``send(_:)`` and ``finish()`` may be called from any thread, before the
///   HTTP/2 stream has opened too (they are held until it has); messages go
///   out in call order.
/// - ``messages`` yields the server's messages in order and ends when the
///   server's trailers arrive: normally for `grpc-status: 0`, by throwing a
///   ``GRPCCallError`` otherwise, or when the connection is lost (14
///   UNAVAILABLE).
/// - Once the call has ended, sends are dropped; the ending tells why.
/// - Ending the iteration of ``messages`` early (a `break`, a cancelled task)
///   or calling ``cancel()`` resets the stream (RST_STREAM CANCEL).
///
/// Inbound messages are buffered without bound until they are read, so a
/// consumer is expected to keep reading (HTTP/2 flow control does not hold a
/// fast server back from a slow consumer here).
public final class GRPCClientStream: Sendable {
    /// The server's messages, ending with the call.
    public let messages: AsyncThrowingStream<[UInt8], any Error>

    private enum State {
        /// The stream is being opened; sends wait here.
        case opening([GRPCClientOutbound])
        case open(any Channel)
        /// Cancelled before the stream opened: it is closed as soon as it does.
        case cancelled
        case ended
    }

    private let state = Mutex(State.opening([]))

    init(messages: AsyncThrowingStream<[UInt8], any Error>) {
        self.messages = messages
    }

    /// Sends one message.
    public func send(_ message: [UInt8]) {
        write(.message(message))
    }

    /// Half-closes the call: the client sends no more. The server may go on
    /// sending until it ends the call.
    public func finish() {
        write(.finish)
    }

    /// Resets the stream; ``messages`` ends with 1 CANCELLED.
    public func cancel() {
        state.withLock { state in
            switch state {
            case .opening:
                state = .cancelled
            case let .open(channel):
                channel.writeAndFlush(GRPCClientOutbound.cancel, promise: nil)
            case .cancelled, .ended:
                break
            }
        }
    }

    private func write(_ outbound: GRPCClientOutbound) {
        state.withLock { state in
            switch state {
            case var .opening(pending):
                state = .cancelled  // drop the array's reference so the append does not copy
                pending.append(outbound)
                state = .opening(pending)
            case let .open(channel):
                // Inside the lock, so writes from several threads keep one order.
                channel.writeAndFlush(outbound, promise: nil)
            case .cancelled, .ended:
                break
            }
        }
    }

    /// The stream opened (on its event loop): returns what was sent before, or
    /// nil if the call was cancelled meanwhile.
    func attach(_ channel: any Channel) -> [GRPCClientOutbound]? {
        state.withLock { state in
            switch state {
            case let .opening(pending):
                state = .open(channel)
                return pending
            case .open, .cancelled, .ended:
                return nil
            }
        }
    }

    /// The call is over; later sends are dropped.
    func ended() {
        state.withLock { $0 = .ended }
    }
}
