import EnsembleServer
import Foundation
import Raft
import RaftTransport
import Synchronization
import Testing

/// When a member snapshots: every `snapshotEvery` entries, and only once the
/// entries since the last snapshot hold `snapshotLogRatio` times its size, so
/// a growing state is not rewritten over and over.
@Suite struct SnapshotScheduleTests {
    /// A put of a new 200-byte value under a fresh key, 213 bytes as an entry.
    static func put(_ i: Int) -> [UInt8] { RegisterMachine.put(String(format: "k%05d", i), String(repeating: "v", count: 200)) }

    /// One member, snapshots due every 5 entries; proposes `count` commands
    /// one at a time and returns the snapshots saved, in order — once `until`
    /// holds for them (at most 10 s), or 200 ms after the last proposal.
    func run(
        count: Int, ratio: Double, until done: (([(index: UInt64, bytes: Int)]) -> Bool)? = nil,
        _ command: (Int) -> [UInt8]
    ) async throws -> [(index: UInt64, bytes: Int)] {
        let directory = NSTemporaryDirectory() + "ensemble-snap-schedule-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let saved = SnapshotRecorder()
        var options = NodeLoop<RegisterMachine>.Options()
        options.tickInterval = .milliseconds(25)
        options.snapshotEvery = 5
        options.snapshotKeep = 2
        options.snapshotLogRatio = ratio
        options.observer = saved
        let node = try NodeLoop(
            config: RaftConfig(id: 1), directory: directory, bootstrap: [1], machine: RegisterMachine(),
            transport: InMemoryTransport(), options: options)
        node.start()
        defer { node.stop() }
        for _ in 0..<500 where node.status.role != .leader {
            node.campaign()
            try await Task.sleep(for: .milliseconds(10))
        }
        for i in 0..<count { _ = try await node.propose(command(i)) }
        // The last snapshot may still be in the background.
        guard let done else {
            try await Task.sleep(for: .milliseconds(200))
            return saved.snapshots
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while !done(saved.snapshots), .now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        return saved.snapshots
    }

    @Test func aGrowingStateIsRewrittenOnlyAsOftenAsTheLogGrowsByItsSize() async throws {
        let entryBytes = Self.put(0).count
        let snapshots = try await run(count: 160, ratio: 1, Self.put)
        // By count alone there would be about 30; with the bound each one
        // waits for the log to grow by the previous one's size: 5, 10, 20, 40, 80, 160.
        #expect(snapshots.count >= 2 && snapshots.count <= 8, "\(snapshots)")
        for (previous, next) in zip(snapshots, snapshots.dropFirst()) {
            // Entries between two snapshots (one may be the leader's empty
            // entry) hold at least the earlier snapshot's bytes.
            let logBytes = Int(next.index - previous.index) * entryBytes
            #expect(logBytes + entryBytes >= previous.bytes, "\(snapshots)")
        }
    }

    @Test func aStateThatStaysSmallIsSnapshottedByCount() async throws {
        let snapshots = try await run(count: 120, ratio: 1) { i in RegisterMachine.put("k", "v\(i)") }
        // Every 5 entries, but for snapshots still being written.
        #expect(snapshots.count >= 4, "\(snapshots)")
    }

    @Test func aStateThatShrankIsMeasuredAsItIsNow() async throws {
        let late = { (snapshots: [(index: UInt64, bytes: Int)]) in snapshots.filter { $0.index > 90 } }
        let snapshots = try await run(count: 130, ratio: 1, until: { !late($0).isEmpty }) { i in
            switch i {
            case 0..<40: Self.put(i)
            case 40..<80: RegisterMachine.delete(String(format: "k%05d", i - 40))
            default: RegisterMachine.put("k", "v\(i)")
            }
        }
        // Before the deletes the snapshots double (about 5, 10, 20, 40);
        // the small state after them is snapshotted by count again. Measured
        // by the size it had, the next would need ~8 KB more log: ~500 small
        // puts, so none would come after index 90. How many do depends on
        // the disk (a due snapshot waits while one is still being written).
        #expect(!late(snapshots).isEmpty, "\(snapshots)")
    }

    @Test func ratioZeroSnapshotsByCountAlone() async throws {
        let snapshots = try await run(count: 160, ratio: 0, Self.put)
        #expect(snapshots.count >= 9, "\(snapshots)")
    }
}

/// Records the snapshots a member saved.
final class SnapshotRecorder: NodeObserver {
    private let saved = Mutex<[(index: UInt64, bytes: Int)]>([])
    var snapshots: [(index: UInt64, bytes: Int)] { saved.withLock { $0 } }
    func snapshotSaved(index: UInt64, bytes: Int, duration: Duration) { saved.withLock { $0.append((index, bytes)) } }
}
