@testable import EnsembleServer
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Review finding: a client that grants no window but keeps sending requests
/// on a stream whose every request is answered (LeaseKeepAlive, watch creates
/// and cancels) made the server queue answers without bound.
@Suite struct ServerStreamBoundTests {
    final class Written: Sendable {
        let items = Mutex<[GRPCOutbox.Item]>([])
    }

    @Test func answersPastTheBoundResetTheCallOnce() async throws {
        let written = Written()
        // Nothing reaches the socket: every message's promise stays open.
        let outbox = GRPCOutbox(eventLoop: MultiThreadedEventLoopGroup.singleton.next()) { batch in written.items.withLock { $0 += batch } }
        let stream = GRPCServerStream(outbox: outbox, stream: 7)
        let answer = [UInt8](repeating: 1, count: 64 << 10)
        for _ in 0..<(GRPCServerStream.maxQueuedBytes / answer.count + 100) { stream.send(answer) }
        #expect(stream.queuedBytes <= GRPCServerStream.maxQueuedBytes + answer.count + 5)
        try await Task.sleep(for: .milliseconds(200))
        let items = written.items.withLock { $0 }
        let aborts = items.filter { if case .abort(7) = $0 { true } else { false } }
        #expect(aborts.count == 1)
        #expect(items.count <= GRPCServerStream.maxQueuedBytes / answer.count + 2)
    }
}
