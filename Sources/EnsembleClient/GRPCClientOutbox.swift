import NIOCore
import Synchronization

/// How calls made on any thread reach the connection's event loop: collected
/// under a lock and handed to the connection's ``GRPCClientHandler`` in one
/// event-loop task, which writes them all and flushes once. The first item
/// after a drain schedules the next drain, so a burst of calls (a batch of
/// answers resumes a batch of callers, whose next calls come together) costs
/// one task and one socket write, not one per call.
///
/// Contract:
/// - Items are handed over in push order, so a stream's HEADERS, messages,
///   half-close and reset go out in the order they were made.
/// - ``open(_:)`` gives a call the next client stream ID (1, 3, 5, …) under
///   the same lock, so IDs rise in the order streams are written, as HTTP/2
///   requires. A call refused later (the connection ended meanwhile) leaves
///   its ID unused, which HTTP/2 allows.
/// - Once closed, nothing more is taken: ``open(_:)`` returns nil and
///   ``push(_:)`` false; ``close()`` returns what was still queued.
final class GRPCClientOutbox: Sendable {
    enum Item: Sendable {
        /// A new call on its stream.
        case open(UInt32, GRPCClientCall.Request)
        /// A streaming call's message, already length-prefixed.
        case message(UInt32, ByteBuffer)
        /// A streaming call's half-close.
        case finish(UInt32)
        /// The caller gave up (cancelled task, ``GRPCClientStream/cancel()``).
        case cancel(UInt32)
    }

    private struct State {
        var items: [Item] = []
        /// Where drained items go; nil until attached and after closing.
        var handler: NIOLoopBound<GRPCClientHandler>?
        var nextStreamID = 1
        var closed = false
        var exhausted = false
    }

    let eventLoop: any EventLoop
    private let state = Mutex(State())

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Sets where drained items go (on the event loop, before the channel is active).
    func attach(_ handler: GRPCClientHandler) {
        let bound = NIOLoopBound(handler, eventLoop: eventLoop)
        state.withLock { $0.handler = bound }
    }

    /// Queues a new call; returns its stream ID, or nil if the outbox is
    /// closed or every stream ID has been used (see ``isExhausted``).
    func open(_ request: GRPCClientCall.Request) -> UInt32? {
        let opened = state.withLock { state -> (UInt32, first: Bool)? in
            guard !state.closed, !state.exhausted else { return nil }
            guard state.nextStreamID <= Int(Int32.max) else {
                state.exhausted = true
                return nil
            }
            let id = UInt32(state.nextStreamID)
            state.nextStreamID += 2
            state.items.append(.open(id, request))
            return (id, state.items.count == 1)
        }
        guard let opened else { return nil }
        if opened.first { scheduleDrain() }
        return opened.0
    }

    /// Queues an item for a call already opened; false if the outbox is closed.
    @discardableResult
    func push(_ item: Item) -> Bool {
        let first = state.withLock { state -> Bool? in
            guard !state.closed else { return nil }
            state.items.append(item)
            return state.items.count == 1
        }
        if first == true { scheduleDrain() }
        return first != nil
    }

    /// True once a call was refused because all 2³⁰ client stream IDs are used.
    var isExhausted: Bool { state.withLock { $0.exhausted } }

    /// Takes nothing more; returns what was queued and not yet handed over.
    func close() -> [Item] {
        state.withLock { state in
            state.closed = true
            state.handler = nil  // the handler holds the outbox: break the cycle
            defer { state.items = [] }
            return state.items
        }
    }

    private func scheduleDrain() {
        eventLoop.execute { [self] in
            let (items, handler) = state.withLock { state in
                defer { state.items.removeAll(keepingCapacity: true) }
                return (state.items, state.handler)
            }
            if let handler, !items.isEmpty { handler.value.drained(items) }
        }
    }
}
