import NIOCore
import Synchronization

/// What other threads hand to one connection: call answers and stream
/// messages, collected under a lock and written by the connection's event
/// loop in one task with one flush. The first item after a drain schedules
/// the next drain, so a node-loop cycle that answers a hundred calls on one
/// connection costs one event-loop task and one socket write, not a hundred.
final class GRPCOutbox: Sendable {
    enum Item: Sendable {
        /// A unary call's answer.
        case reply(UInt32, Result<GRPCResponse, GRPCStatus>)
        /// A streaming call's message; `sent` completes when it reaches the socket.
        case message(UInt32, [UInt8], sent: EventLoopPromise<Void>?)
        /// A streaming call's messages, each encoded when they are written
        /// (nil: none), in one DATA frame.
        case encoded(UInt32, [@Sendable () -> [UInt8]?], sent: EventLoopPromise<Void>?)
        /// Ends a streaming call.
        case end(UInt32, GRPCStatus)
        /// Resets a streaming call whose client stopped reading, dropping what
        /// is queued for it (``GRPCServerStream/maxQueuedBytes``).
        case abort(UInt32)
    }

    let eventLoop: any EventLoop
    private let pending = Mutex<(items: [Item], closed: Bool)>(([], false))
    private let write: @Sendable ([Item]) -> Void

    /// `write` runs on `eventLoop` with everything pushed since the last drain.
    init(eventLoop: any EventLoop, write: @escaping @Sendable ([Item]) -> Void) {
        self.eventLoop = eventLoop
        self.write = write
    }

    /// Queues `item`; from any thread.
    func push(_ item: Item) {
        let first = pending.withLock { pending -> Bool? in
            guard !pending.closed else { return nil }
            pending.items.append(item)
            return pending.items.count == 1
        }
        switch first {
        case nil:
            item.sent?.succeed()
        case true?:
            eventLoop.execute { [self] in drain() }
        case false?:
            break
        }
    }

    /// The connection is gone: what is queued or comes later is dropped.
    func close() {
        let dropped = pending.withLock { pending -> [Item] in
            pending.closed = true
            defer { pending.items = [] }
            return pending.items
        }
        for item in dropped { item.sent?.succeed() }
    }

    private func drain() {
        let items = pending.withLock { pending -> [Item] in
            defer { pending.items.removeAll(keepingCapacity: true) }
            return pending.items
        }
        if !items.isEmpty { write(items) }
    }
}

extension GRPCOutbox.Item {
    /// The promise a stream message completes when written or dropped.
    var sent: EventLoopPromise<Void>? {
        switch self {
        case let .message(_, _, sent), let .encoded(_, _, sent): sent
        default: nil
        }
    }
}
