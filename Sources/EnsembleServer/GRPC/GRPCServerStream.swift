import NIOCore
import Synchronization

/// The sending side of one streaming call, safe to use from any thread:
/// messages are written and flushed on the stream's channel in call order.
/// Response headers go out before the first message; ``finish(_:)`` sends the
/// trailers and ends the call.
///
/// ``queuedBytes`` counts what has been handed to the stream but not yet to the
/// connection (HTTP/2 flow control holds it back from a slow reader), so a
/// producer such as a watch can stop feeding a client that does not keep up.
public final class GRPCServerStream: Sendable {
    let channel: any Channel
    private let queued = Atomic<Int>(0)

    init(channel: any Channel) {
        self.channel = channel
    }

    public var queuedBytes: Int { queued.load(ordering: .relaxed) }

    public func send(_ message: [UInt8]) {
        let size = message.count + 5
        queued.add(size, ordering: .relaxed)
        let promise = channel.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { [self] _ in queued.subtract(size, ordering: .relaxed) }
        channel.writeAndFlush(GRPCOutbound.message(message), promise: promise)
    }

    /// Ends the call with `status` (``GRPCStatus/ok`` for success).
    public func finish(_ status: GRPCStatus) {
        channel.writeAndFlush(GRPCOutbound.end(status), promise: nil)
    }
}

/// What a call handler writes: a response message, or the end of the call.
enum GRPCOutbound: Sendable {
    case message([UInt8])
    case end(GRPCStatus)
}
