import NIOCore
import Synchronization

/// The sending side of one streaming call, safe to use from any thread:
/// messages are written on the connection in call order. Response headers go
/// out before the first message; ``finish(_:)`` sends the trailers and ends
/// the call.
///
/// ``queuedBytes`` counts what has been handed to the stream but not yet to the
/// socket (HTTP/2 flow control holds it back from a slow reader), so a
/// producer such as a watch can stop feeding a client that does not keep up.
public final class GRPCServerStream: Sendable {
    private let outbox: GRPCOutbox
    private let stream: UInt32
    private let queued = Atomic<Int>(0)
    /// The part of `queued` its senders do not pace themselves.
    private let unpaced = Atomic<Int>(0)
    private let aborted = Atomic<Bool>(false)

    /// More than this waiting for a client that grants no window ends the
    /// call (RST_STREAM ENHANCE_YOUR_CALM, which grpc-go reports as
    /// RESOURCE_EXHAUSTED): the receive side credits requests as they arrive,
    /// so a client could otherwise keep asking (keep-alives, watch creates and
    /// cancels) and never read, until the server runs out of memory. A watch
    /// pauses its events at 4 MiB, the snapshot sender at its own bound; this
    /// catches the answers that are not paused: only messages sent without
    /// `paced` count toward it.
    public static let maxQueuedBytes = 16 << 20

    /// The client asked that the call fail rather than go stale while its
    /// member has no leader (etcd's `hasleader: true` metadata, which clientv3
    /// sets for watches and keep-alives with `WithRequireLeader`).
    public let requiresLeader: Bool

    init(outbox: GRPCOutbox, stream: UInt32, requiresLeader: Bool = false) {
        self.outbox = outbox
        self.stream = stream
        self.requiresLeader = requiresLeader
    }

    public var queuedBytes: Int { queued.load(ordering: .relaxed) }

    /// The connection's event loop, where the call's receiver is called.
    public var eventLoop: any EventLoop { outbox.eventLoop }

    /// Queues `message`. `paced`: the caller bounds what it queues itself
    /// (it checks ``queuedBytes`` before sending, as a watch admits events
    /// and the snapshot sender waits for room), so the message may go past
    /// ``maxQueuedBytes`` — a watch revision larger than that, or its
    /// fragments, is sent whole, as etcd sends it, not cut off.
    public func send(_ message: [UInt8], paced: Bool = false) {
        enqueue(size: message.count + 5, paced: paced) { .message(stream, message, sent: $0) }
    }

    /// ``send(_:paced:)`` for messages that `encode` makes, one each, on
    /// the connection's event loop when they are written — so the thread
    /// that produced them (a watch's, which applies the log) does not encode
    /// them — together, in one DATA frame; they count as `estimatedBytes`
    /// while queued. Messages stay in call order.
    public func send(estimatedBytes: Int, paced: Bool = false, _ encode: [@Sendable () -> [UInt8]?]) {
        let stream = self.stream
        enqueue(size: estimatedBytes + 5 * encode.count, paced: paced) { .encoded(stream, encode, sent: $0) }
    }

    private func enqueue(size: Int, paced: Bool, _ item: (EventLoopPromise<Void>) -> GRPCOutbox.Item) {
        guard paced || unpaced.load(ordering: .relaxed) <= Self.maxQueuedBytes else {
            if aborted.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
                outbox.push(.abort(stream))
            }
            return
        }
        queued.add(size, ordering: .relaxed)
        if !paced { unpaced.add(size, ordering: .relaxed) }
        let sent = outbox.eventLoop.makePromise(of: Void.self)
        sent.futureResult.whenComplete { [self] _ in
            queued.subtract(size, ordering: .relaxed)
            if !paced { unpaced.subtract(size, ordering: .relaxed) }
        }
        outbox.push(item(sent))
    }

    /// Ends the call with `status` (``GRPCStatus/ok`` for success).
    public func finish(_ status: GRPCStatus) {
        outbox.push(.end(stream, status))
    }
}
