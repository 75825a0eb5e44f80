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

    /// Review finding: a watch revision (or its fragments) past the bound
    /// reset the stream, and so did any answer after one. Messages whose
    /// sender paces itself go out whole and do not count toward the bound.
    @Test func pacedMessagesPassTheBoundAndDoNotCountTowardIt() async throws {
        let written = Written()
        let outbox = GRPCOutbox(eventLoop: MultiThreadedEventLoopGroup.singleton.next()) { batch in written.items.withLock { $0 += batch } }
        let stream = GRPCServerStream(outbox: outbox, stream: 9)
        let fragment = [UInt8](repeating: 2, count: 1 << 20)
        for _ in 0..<24 { stream.send(fragment, paced: true) }
        #expect(stream.queuedBytes > GRPCServerStream.maxQueuedBytes, "the watch still sees what is queued")
        for _ in 0..<10 { stream.send([1, 2, 3]) }
        try await Task.sleep(for: .milliseconds(200))
        let items = written.items.withLock { $0 }
        #expect(!items.contains { if case .abort = $0 { true } else { false } })
        #expect(items.count == 34)
    }
}
