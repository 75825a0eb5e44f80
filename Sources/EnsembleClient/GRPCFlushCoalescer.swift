import NIOCore

/// Turns the flushes of one event-loop turn into one socket write.
///
/// Every call flushes its own HEADERS and DATA, and calls arrive in bursts (a
/// batch of answers resumes a batch of callers, whose next calls hop to the
/// loop together). Without this handler each of them costs a `writev`; with
/// it, the first flush of a turn schedules one real flush after the tasks
/// already queued, and later flushes in the meantime are absorbed. It sits
/// next to the socket, below NIOHTTP2, so it also batches NIOHTTP2's own
/// frames (WINDOW_UPDATE, PING answers) with them.
final class GRPCFlushCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = Any

    private var flushScheduled = false

    init() {}

    func flush(context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            context.flush()
        }
    }
}
