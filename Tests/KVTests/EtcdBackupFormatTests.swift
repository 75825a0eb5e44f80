import Bolt
import Foundation
@testable import KV
import Testing

/// The state written in etcd's backup layout and read back: the same keys,
/// history, revisions, compaction point, leases and alarms (the hash members
/// compare agrees), spilled history values included. The layout against the
/// real etcd is `EtcdBackupTests` (EnsembleServerTests).
@Suite struct EtcdBackupFormatTests {
    func b(_ s: String) -> [UInt8] { Array(s.utf8) }

    func roundTrip(_ machine: KVStateMachine) throws -> KVStateMachine {
        let bytes = machine.freeze().etcdBackup(consistentIndex: 42).bytes()
        let restored = KVStateMachine()
        try restored.restore(etcdBackup: BoltFile(bytes))
        return restored
    }

    @Test(arguments: [1, 2, 3, 4] as [UInt64]) func randomHistoriesReadBack(seed: UInt64) throws {
        var random = seed
        func next(_ n: Int) -> Int {
            random = random &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((random >> 33) % UInt64(n))
        }
        let directory = NSTemporaryDirectory() + "etcd-backup-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let machine = KVStateMachine()
        let log = HistoryValueLog(directory: directory, segmentSize: 4_096, flushThreshold: 64)
        if seed % 2 == 0 { machine.store.historyValues = log }
        _ = machine.apply(.leaseGrant(id: 7, ttl: 600))
        _ = machine.apply(.leaseGrant(id: 9, ttl: 30))
        _ = machine.apply(.leaseCheckpoint([.init(id: 9, remainingTTL: 12)]))
        for step in 0..<1_500 {
            let key = b("k\(next(60))")
            switch next(10) {
            case 0: _ = machine.apply(.deleteRange(DeleteRangeRequest(key: key)))
            case 1: _ = machine.apply(.put(PutRequest(key: key, value: [UInt8](repeating: 1, count: next(9_000)), lease: 7)))
            case 2 where step % 97 == 0: _ = machine.apply(.compact(revision: machine.store.revision - Int64(next(50))))
            default: _ = machine.apply(.put(PutRequest(key: key, value: b("v\(step)"))))
            }
        }
        // Raised last: NOSPACE refuses puts.
        _ = machine.apply(.alarm(activate: true, Alarm(member: 0xabc, kind: .noSpace)))
        #expect(machine.store.revision > 1_000)
        #expect(seed % 2 == 1 || log.segmentsCreated > 10, "history values spilled to the log are read back: \(machine.store.revision) \(machine.store.keyCount) \(log.segmentsCreated)")
        let restored = try roundTrip(machine)
        #expect(restored.store.revision == machine.store.revision)
        #expect(restored.store.compactedRevision == machine.store.compactedRevision)
        #expect(try restored.hashKV() == machine.hashKV())
        #expect(restored.store.keyCount == machine.store.keyCount)
        #expect(restored.leases.ids == machine.leases.ids)
        #expect(restored.leases.leases[9]?.checkpointTTL == 12 && restored.leases.leases[7]?.keys == machine.leases.leases[7]?.keys)
        #expect(restored.alarms == machine.alarms)
        // Reads at an old revision see the same values.
        var old = RangeRequest(key: b("k"), rangeEnd: b("l"))
        old.revision = machine.store.revision - 20
        #expect(try restored.store.range(old).kvs == machine.store.range(old).kvs)
    }

    /// An empty store (revision 1, never compacted) and one whose last
    /// changes compaction removed (the revision comes from the meta bucket).
    @Test func emptyAndFullyCompactedStores() throws {
        let empty = try roundTrip(KVStateMachine())
        #expect(empty.store.revision == 1 && empty.store.compactedRevision == -1 && empty.store.keyCount == 0)

        let machine = KVStateMachine()
        _ = machine.apply(.put(PutRequest(key: b("a"), value: b("1"))))
        _ = machine.apply(.deleteRange(DeleteRangeRequest(key: b("a"))))
        _ = machine.apply(.compact(revision: 3))
        let restored = try roundTrip(machine)
        #expect(restored.store.revision == 3 && restored.store.compactedRevision == 3)
        // The deletion at the compaction point stays, for watchers starting there.
        #expect(machine.store.keyCount == 1 && restored.store.keyCount == 1)
        #expect(try restored.hashKV() == machine.hashKV())
    }

    /// A file that is bbolt but not etcd's layout, or whose records do not
    /// decode, is refused with what is wrong.
    @Test func filesThatAreNotEtcdBackupsAreRefused() throws {
        func file(_ buckets: [([UInt8], [([UInt8], [UInt8])])]) throws -> BoltFile {
            try BoltFile(BoltWriter(buckets: buckets.map { BoltBucketSource(name: $0.0, entries: $0.1) }).bytes())
        }
        let revision: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 2, 0x5F, 0, 0, 0, 0, 0, 0, 0, 0]
        let machine = KVStateMachine()
        _ = machine.apply(.put(PutRequest(key: b("kept"), value: b("1"))))
        let cases: [([([UInt8], [([UInt8], [UInt8])])], String)] = [
            ([(b("other"), [])], "no \"key\" bucket"),
            ([(b("key"), [(b("short"), [])])], "not a revision"),
            ([(b("key"), [(revision, [0xFF])])], "does not hold a key-value"),
            ([(b("key"), [(revision, [0x0A, 1, 0x61, 0x18, 9])])], "inconsistent"),
            ([(b("key"), []), (b("lease"), [([1], [0x08])])], "lease"),
        ]
        for (buckets, reason) in cases {
            do {
                try machine.restore(etcdBackup: file(buckets))
                Issue.record("accepted a file without \(reason)")
            } catch {
                #expect("\(error)".contains(reason), "\(error)")
            }
        }
        #expect(try machine.store.range(RangeRequest(key: b("kept"))).kvs.count == 1, "nothing changed")
    }
}
