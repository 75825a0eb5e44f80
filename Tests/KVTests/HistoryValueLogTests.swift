import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import KV
import Synchronization
import Raft
import Testing

/// Superseded values in files (``HistoryValueLog``): a store that spills must
/// answer exactly as one that keeps everything in memory, and its files must
/// go when compaction (and any snapshot still being written) lets them go.
@Suite struct HistoryValueLogTests {
    final class TempDirectory {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("history-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
        /// Segment files are unlinked once open: none is ever listed.
        var names: [String] { (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] }
    }

    func value(_ rng: inout SeededRandom, step: Int) -> [UInt8] {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0: []
        case 1: [UInt8](repeating: UInt8(step & 0xFF), count: Int.random(in: 200...700, using: &rng))
        default: b("v\(step)")
        }
    }

    /// Random puts (empty, small and segment-sized values), deletes, txns,
    /// leases and compactions on two machines, one spilling into tiny
    /// segments; reads at every retained revision, replays, hashes and
    /// snapshots agree after every step.
    @Test(arguments: 1...12 as ClosedRange<UInt64>)
    func spillingStoreAnswersLikeAnInMemoryOne(seed: UInt64) throws {
        let directory = try TempDirectory()
        let plain = KVStateMachine()
        let spilling = KVStateMachine()
        spilling.store.historyValues = HistoryValueLog(
            directory: directory.path + "/history", segmentSize: 512, flushThreshold: Int(seed % 3) * 100 + 1)
        var rng = SeededRandom(seed: seed)
        for machine in [plain, spilling] { _ = machine.apply(.leaseGrant(id: 7, ttl: 60)) }
        for step in 0..<250 {
            let key = b("k\(Int.random(in: 0..<8, using: &rng))")
            let command: KVStateMachine.Command
            switch Int.random(in: 0..<10, using: &rng) {
            case 0...4:
                command = .put(PutRequest(key: key, value: value(&rng, step: step), lease: Bool.random(using: &rng) ? 7 : 0))
            case 5:
                command = .deleteRange(DeleteRangeRequest(key: key))
            case 6:
                command = .deleteRange(DeleteRangeRequest(key: b("k2"), rangeEnd: b("k5")))
            case 7:
                command = .txn(TxnRequest(
                    compare: [Compare(key: key, .version(Int64.random(in: 0...3, using: &rng)), .greater)],
                    success: [.put(PutRequest(key: key, value: value(&rng, step: step))), .put(PutRequest(key: b("k0"), value: b("t\(step)")))],
                    failure: [.deleteRange(DeleteRangeRequest(key: key))]))
            case 8 where spilling.store.revision > spilling.store.compactedRevision + 20:
                command = .compact(revision: spilling.store.revision - Int64.random(in: 1...20, using: &rng))
            case 9 where step % 50 == 0:
                command = .leaseRevoke(id: 7)
            default:
                command = .put(PutRequest(key: key, value: value(&rng, step: step)))
            }
            let expected = plain.apply(command)
            let got = spilling.apply(command)
            #expect(got.0 == expected.0, "seed \(seed) step \(step)")
            #expect(got.1 == expected.1, "seed \(seed) step \(step): events")
            if step % 25 == 24 { try expectSame(plain, spilling, "seed \(seed) step \(step)") }
        }
        try expectSame(plain, spilling, "seed \(seed) end")
        var spilled = 0
        spilling.store.index.scan(from: [], to: nil) { _, history in
            spilled += history.versions.filter { stateName($0) == "spilled" }.count
            #expect(history.versions.last.map(stateName) != "spilled", "the latest version stays in memory")
            return true
        }
        #expect(spilled > 0)
        #expect(spilling.store.historyValues?.failure == nil)

        // A restore spills too, and still answers the same.
        let restored = KVStateMachine()
        let log = HistoryValueLog(directory: directory.path + "/restored", segmentSize: 512, flushThreshold: 64)
        restored.store.historyValues = log
        try restored.restore(plain.snapshot())
        try expectSame(plain, restored, "seed \(seed) restored")
        #expect(log.segmentsCreated > 0 || restored.store.keyCount == 0)
        #expect(directory.names.sorted() == ["history", "restored"])
        #expect(HistoryValueLog(directory: directory.path + "/history").failure == nil, "an existing directory is fine")
    }

    func expectSame(_ a: KVStateMachine, _ b: KVStateMachine, _ context: String) throws {
        #expect(a.store.revision == b.store.revision, "\(context)")
        #expect(a.store.approximateBytes == b.store.approximateBytes, "\(context): size")
        #expect(a.snapshot() == b.snapshot(), "\(context): snapshot")
        #expect(try a.hashKV().hash == b.hashKV().hash, "\(context): hash")
        let first = max(a.store.compactedRevision, 1)
        for revision in first...a.store.revision {
            var request = RangeRequest(key: [0], rangeEnd: [0])
            request.revision = revision
            #expect(try a.store.range(request) == b.store.range(request), "\(context): range at \(revision)")
            // Values are read only for the keys kept: every way of keeping fewer.
            var variants: [RangeRequest] = []
            for shape in 0..<6 {
                var variant = request
                switch shape {
                case 0: variant.keysOnly = true
                case 1: variant.countOnly = true
                case 2: variant.limit = 2
                case 3: variant.minModRevision = max(revision - 10, 1)
                case 4:
                    // The sort picks the keys kept; their values are read after.
                    variant.sortTarget = .mod
                    variant.sortOrder = .descend
                    variant.limit = 2
                default:
                    variant.sortTarget = .value
                    variant.sortOrder = .descend
                    variant.limit = 3
                }
                variants.append(variant)
            }
            for variant in variants {
                #expect(try a.store.range(variant) == b.store.range(variant), "\(context): \(variant) at \(revision)")
            }
        }
        let all = KeyRange(key: [0], rangeEnd: [0])
        #expect(a.store.events(in: all, from: first, through: a.store.revision)
            == b.store.events(in: all, from: first, through: a.store.revision), "\(context): replay")
    }

    /// Only superseded values leave memory; the latest version of a key is
    /// always in memory, and a value still in the unwritten tail reads back.
    @Test func onlySupersededValuesSpill() throws {
        let directory = try TempDirectory()
        let store = MVCCStore()
        store.historyValues = HistoryValueLog(directory: directory.path, flushThreshold: 1 << 20)
        _ = try store.put(PutRequest(key: b("a"), value: b("one")))
        _ = try store.put(PutRequest(key: b("a"), value: b("two")))
        _ = try store.deleteRange(DeleteRangeRequest(key: b("a")))
        _ = try store.put(PutRequest(key: b("a"), value: b("three")))
        let versions = try #require(store.index.value(for: b("a"))).versions
        #expect(versions.map(stateName) == ["spilled", "spilled", "tombstone", "value"])
        var request = RangeRequest(key: b("a"))
        request.revision = 2
        #expect(try store.range(request).kvs.map(\.value) == [b("one")])
        request.revision = 3
        #expect(try store.range(request).kvs.map(\.value) == [b("two")])
        #expect(store.historyValues?.segmentsCreated == 1)
        #expect(directory.names.isEmpty)
    }

    func stateName(_ version: KeyHistory.Version) -> String {
        switch version.state {
        case .value: "value"
        case .spilled: "spilled"
        case .tombstone: "tombstone"
        }
    }

    /// Compaction frees whole segments from the oldest on; a frozen copy
    /// (a snapshot being written) keeps the ones it points into until it is
    /// done with them.
    @Test func compactionRemovesSegmentsOnceNothingPointsIntoThem() throws {
        let directory = try TempDirectory()
        let machine = KVStateMachine()
        let log = HistoryValueLog(directory: directory.path, segmentSize: 1_000, flushThreshold: 100)
        machine.store.historyValues = log
        for i in 0..<100 {
            _ = machine.apply(.put(PutRequest(key: b("key"), value: [UInt8](repeating: UInt8(i), count: 100))))
        }
        #expect(log.segmentsCreated == 10)
        #expect(log.liveSegments == 10)
        var frozen: FrozenKVState? = machine.freeze()
        let before = frozen?.encode()
        _ = machine.apply(.compact(revision: machine.store.revision))
        #expect(log.liveSegments == 10, "the frozen copy still reads them")
        #expect(frozen?.encode() == before)
        frozen = nil
        // Nothing points into any segment now; the log keeps its active one.
        #expect(log.liveSegments == 1)
        let restored = KVStateMachine()
        try restored.restore(try #require(before))
        var old = RangeRequest(key: b("key"))
        old.revision = 50
        #expect(try restored.store.range(old).kvs.first?.value == [UInt8](repeating: 48, count: 100))
        #expect(try machine.store.range(RangeRequest(key: b("key"))).kvs.first?.value == [UInt8](repeating: 99, count: 100))
    }

    /// A log that cannot create its directory spills nothing and says why;
    /// the store keeps values in memory and answers as before.
    @Test func unusableDirectoryKeepsValuesInMemory() throws {
        let reasons = Mutex<[String]>([])
        let store = MVCCStore()
        store.historyValues = HistoryValueLog(directory: "/nonexistent-\(UUID().uuidString)/history") { reason in
            reasons.withLock { $0.append(reason) }
        }
        _ = try store.put(PutRequest(key: b("a"), value: b("one")))
        _ = try store.put(PutRequest(key: b("a"), value: b("two")))
        let versions = try #require(store.index.value(for: b("a"))).versions
        #expect(versions.map(stateName) == ["value", "value"])
        #expect(reasons.withLock { $0.count } == 1)
        #expect(reasons.withLock { $0.first }?.contains("cannot create") == true)
        var request = RangeRequest(key: b("a"))
        request.revision = 2
        #expect(try store.range(request).kvs.map(\.value) == [b("one")])
    }

    /// A segment that cannot be created stops spilling: values stay in memory.
    @Test func aSegmentThatCannotBeCreatedKeepsValuesInMemory() throws {
        let directory = try TempDirectory()
        let reasons = Mutex<[String]>([])
        let store = MVCCStore()
        let log = HistoryValueLog(directory: directory.path) { reason in reasons.withLock { $0.append(reason) } }
        log.openFile = { _ in
            errno = ENOSPC
            return -1
        }
        store.historyValues = log
        for value in ["one", "two", "three"] { _ = try store.put(PutRequest(key: b("a"), value: b(value))) }
        let versions = try #require(store.index.value(for: b("a"))).versions
        #expect(versions.map(stateName) == ["value", "value", "value"])
        #expect(reasons.withLock { $0.count } == 1)
        #expect(log.failure?.contains("No space left") == true)
    }

    /// A segment whose writes fail (here /dev/full) keeps what it was given
    /// in memory, readable; spilling then stops. Answers do not change.
    @Test func aFailedWriteKeepsTheTailInMemory() throws {
        let directory = try TempDirectory()
        let plain = KVStateMachine()
        let spilling = KVStateMachine()
        let log = HistoryValueLog(directory: directory.path, segmentSize: 300, flushThreshold: 50)
        log.openFile = { _ in open("/dev/full", O_RDWR | O_CLOEXEC) }
        spilling.store.historyValues = log
        for i in 0..<40 {
            let command = KVStateMachine.Command.put(PutRequest(key: b("k\(i % 3)"), value: b("value number \(i)")))
            #expect(plain.apply(command).0 == spilling.apply(command).0)
        }
        #expect(log.failure?.contains("No space left") == true)
        #expect(log.segmentsCreated == 1)
        try expectSame(plain, spilling, "after a failed write")
    }

    /// Snapshots are encoded on other threads from frozen copies while the
    /// apply thread keeps spilling, rolling segments and compacting.
    @Test func frozenCopiesEncodeWhileTheStoreKeepsSpilling() throws {
        let directory = try TempDirectory()
        let plain = KVStateMachine()
        let spilling = KVStateMachine()
        spilling.store.historyValues = HistoryValueLog(directory: directory.path, segmentSize: 2_000, flushThreshold: 300)
        let mismatches = Mutex<[Int]>([])
        let group = DispatchGroup()
        var rng = SeededRandom(seed: 99)
        for step in 0..<2_000 {
            let command: KVStateMachine.Command =
                step % 97 == 96 && spilling.store.revision > 50
                ? .compact(revision: spilling.store.revision - 50)
                : .put(PutRequest(key: b("k\(Int.random(in: 0..<20, using: &rng))"), value: value(&rng, step: step)))
            _ = plain.apply(command)
            _ = spilling.apply(command)
            if step % 50 == 0 {
                let expected = plain.snapshot()
                let frozen = spilling.freeze()
                DispatchQueue.global().async(group: group) {
                    var chunks: [UInt8] = []
                    _ = frozen.encode(chunk: 333) { chunks += $0; return true }
                    if chunks != expected || frozen.encodedCount() != expected.count {
                        mismatches.withLock { $0.append(step) }
                    }
                }
            }
        }
        group.wait()
        #expect(mismatches.withLock { $0 } == [])
        try expectSame(plain, spilling, "end")
    }
}
