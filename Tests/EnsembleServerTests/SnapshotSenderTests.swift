import Bolt
@testable import EnsembleServer
import EnsembleAPI
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// The Snapshot call's sender against a client that keeps its connection but
/// stops reading: it must not hold its thread and the frozen state forever.
@Suite struct SnapshotSenderTests {
    final class Written: Sendable {
        let items = Mutex<[GRPCOutbox.Item]>([])
    }

    @Test func aClientThatStopsReadingIsEndedAfterTheStallTimeout() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let written = Written()
        // Nothing ever reaches the socket: the messages' promises stay open,
        // as HTTP/2 flow control holds them for a client that does not read.
        let outbox = GRPCOutbox(eventLoop: group.next()) { batch in written.items.withLock { $0 += batch } }
        let sender = SnapshotSender(stream: GRPCServerStream(outbox: outbox, stream: 1), stallTimeout: .milliseconds(300))
        // About 16 MiB of pages, values made as they are written.
        @Sendable func backup() -> BoltWriter {
            BoltWriter(buckets: [
                BoltBucketSource(
                    name: Array("key".utf8), count: 4_096, key: { i in (0..<4).map { UInt8(truncatingIfNeeded: i >> (24 - 8 * $0)) } },
                    valueCount: { _ in 4_000 }, value: { _ in [UInt8](repeating: 7, count: 4_000) })
            ])
        }
        // Timed on the sending thread: the test's own task may wait long for
        // a turn on a loaded machine.
        let took = await withCheckedContinuation { (continuation: CheckedContinuation<Duration, Never>) in
            Thread {
                let started = ContinuousClock.now
                sender.send(backup(), header: Etcdserverpb_ResponseHeader())
                continuation.resume(returning: ContinuousClock.now - started)
            }.start()
        }
        #expect(took < .seconds(10), "\(took)")
        try await Task.sleep(for: .milliseconds(50))
        let items = written.items.withLock { $0 }
        let ends = items.compactMap { item -> GRPCStatus? in
            if case let .end(_, status) = item { status } else { nil }
        }
        #expect(ends.map(\.code) == [4], "\(ends)")
        let sent = items.reduce(0) { total, item in
            if case let .message(_, bytes, _) = item { total + bytes.count } else { total }
        }
        #expect(sent < 2 * SnapshotSender.maxQueued, "it stopped once the queue was full: \(sent)")
        for case let .message(_, _, promise) in items { promise?.succeed() }
        try await group.shutdownGracefully()
    }
}
