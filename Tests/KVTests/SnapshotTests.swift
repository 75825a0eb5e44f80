@testable import KV
import Raft
import Testing

@Suite struct KVSnapshotTests {
    func randomMachine(seed: UInt64, steps: Int = 300) -> KVStateMachine {
        var rng = SeededRandom(seed: seed)
        let kv = KVStateMachine()
        _ = kv.apply(.leaseGrant(id: 11, ttl: 30))
        _ = kv.apply(.leaseGrant(id: 12, ttl: 60))
        _ = kv.apply(.leaseCheckpoint([.init(id: 12, remainingTTL: 17)]))
        for step in 0..<steps {
            let key = b("k\(Int.random(in: 0..<20, using: &rng))")
            switch Int.random(in: 0..<6, using: &rng) {
            case 0...2:
                let lease: LeaseID = [0, 0, 11, 12][Int.random(in: 0..<4, using: &rng)]
                _ = kv.apply(.put(PutRequest(key: key, value: b("v\(step)"), lease: lease)))
            case 3:
                _ = kv.apply(.deleteRange(DeleteRangeRequest(key: key)))
            case 4 where kv.store.revision > kv.store.compactedRevision + 5:
                _ = kv.apply(.compact(revision: kv.store.revision - 5))
            default:
                break
            }
        }
        return kv
    }

    /// The streamed encoding (counted first, then produced in chunks, as a
    /// member writes its snapshot file) gives exactly ``encode()``'s bytes,
    /// and a sink that refuses stops it.
    @Test func chunkedEncodingMatchesTheWholeOne() {
        for seed in 1...20 as ClosedRange<UInt64> {
            let frozen = randomMachine(seed: seed).freeze()
            let whole = frozen.encode()
            #expect(frozen.encodedCount() == whole.count, "seed \(seed)")
            for chunk in [1, 7, 100, 1 << 20] {
                var pieces: [[UInt8]] = []
                let complete = frozen.encode(chunk: chunk) { pieces.append($0); return true }
                #expect(complete)
                #expect(pieces.flatMap { $0 } == whole, "seed \(seed), chunk \(chunk)")
            }
            var taken = 0
            let complete = frozen.encode(chunk: 16) { _ in
                taken += 1
                return taken < 3
            }
            #expect(!complete)
            #expect(taken == 3, "no chunk after a refusal")
        }
    }

    /// Found by the snapshot-save test: a store never compacted (compaction
    /// point -1) wrote a snapshot it then refused to restore.
    @Test func neverCompactedStoreRoundTrips() throws {
        let original = KVStateMachine()
        _ = original.apply(.put(PutRequest(key: b("a"), value: b("1"))))
        #expect(original.store.compactedRevision == -1)
        let copy = KVStateMachine()
        try copy.restore(original.snapshot())
        #expect(copy.store.compactedRevision == -1 && copy.store.revision == 2)
        let empty = KVStateMachine()
        try empty.restore(KVStateMachine().snapshot())
        #expect(empty.store.revision == 1)
    }

    @Test func alarmsAndSizeSurviveASnapshot() throws {
        let original = randomMachine(seed: 5)
        _ = original.apply(.alarm(activate: true, Alarm(member: 3, kind: .noSpace)))
        let copy = KVStateMachine()
        try copy.restore(original.snapshot())
        #expect(copy.alarms == [Alarm(member: 3, kind: .noSpace)])
        #expect(copy.store.approximateBytes == original.store.approximateBytes && copy.store.approximateBytes > 0)
    }

    @Test func noSpaceRefusesWritesThatAddDataOnly() {
        let kv = KVStateMachine()
        _ = kv.apply(.put(PutRequest(key: b("a"), value: b("1"))))
        _ = kv.apply(.alarm(activate: true, Alarm(member: 1, kind: .noSpace)))
        #expect(kv.apply(.put(PutRequest(key: b("b"), value: b("2")))).0 == .failure(.kv(.noSpace)))
        #expect(kv.apply(.leaseGrant(id: 1, ttl: 10)).0 == .failure(.kv(.noSpace)))
        #expect(kv.apply(.txn(TxnRequest(success: [.put(PutRequest(key: b("c"), value: []))]))).0 == .failure(.kv(.noSpace)))
        guard case .success = kv.apply(.txn(TxnRequest(success: [.range(RangeRequest(key: b("a")))]))).0 else {
            Issue.record("read-only txns still work")
            return
        }
        guard case .success = kv.apply(.deleteRange(DeleteRangeRequest(key: b("a")))).0 else {
            Issue.record("deletes free space and still work")
            return
        }
        _ = kv.apply(.alarm(activate: false, Alarm(member: 1, kind: .noSpace)))
        guard case .success = kv.apply(.put(PutRequest(key: b("b"), value: b("2")))).0 else {
            Issue.record("disarmed")
            return
        }
    }

    /// CORRUPT refuses what changes the keyspace or leases, with etcd's
    /// error (applierV3Corrupt); ranges and range-only txns go on.
    @Test func corruptRefusesEveryWriteUntilDisarmed() {
        let kv = KVStateMachine()
        _ = kv.apply(.put(PutRequest(key: b("a"), value: b("1"))))
        _ = kv.apply(.leaseGrant(id: 7, ttl: 60))
        _ = kv.apply(.alarm(activate: true, Alarm(member: 2, kind: .corrupt)))
        let refused: [KVStateMachine.Command] = [
            .put(PutRequest(key: b("b"), value: b("2"))),
            .deleteRange(DeleteRangeRequest(key: b("a"))),
            .txn(TxnRequest(success: [.deleteRange(DeleteRangeRequest(key: b("a")))])),
            .txn(TxnRequest(success: [.txn(TxnRequest(success: [.range(RangeRequest(key: b("a")))]))])),
            .compact(revision: 1),
            .leaseGrant(id: 8, ttl: 60),
            .leaseRevoke(id: 7),
        ]
        for command in refused {
            #expect(kv.apply(command).0 == .failure(.kv(.corrupt)), "\(command)")
        }
        #expect(KVError.corrupt.description == "etcdserver: corrupt cluster" && KVError.corrupt.grpcCode.rawValue == 15)
        guard case .success = kv.apply(.txn(TxnRequest(success: [.range(RangeRequest(key: b("a")))]))).0 else {
            Issue.record("a txn of ranges is served (etcd serves it outside the log)")
            return
        }
        #expect(kv.store.revision == 2, "nothing was written")
        _ = kv.apply(.alarm(activate: false, Alarm(member: 2, kind: .corrupt)))
        guard case .success = kv.apply(.put(PutRequest(key: b("b"), value: b("2")))).0 else {
            Issue.record("disarmed")
            return
        }
    }

    /// The size estimate grows with every version and shrinks with compaction,
    /// and always equals a recount.
    @Test func approximateBytesFollowsHistory() throws {
        let kv = randomMachine(seed: 9)
        let recount = KVStateMachine()
        try recount.restore(kv.snapshot())
        #expect(kv.store.approximateBytes == recount.store.approximateBytes)
        let before = kv.store.approximateBytes
        _ = kv.apply(.compact(revision: kv.store.revision))
        #expect(kv.store.approximateBytes < before)
        try recount.restore(kv.snapshot())
        #expect(kv.store.approximateBytes == recount.store.approximateBytes)
    }

    @Test func roundTripReproducesEverythingObservable() throws {
        let original = randomMachine(seed: 1)
        let copy = KVStateMachine()
        try copy.restore(original.snapshot())
        #expect(copy.store.revision == original.store.revision)
        #expect(copy.store.compactedRevision == original.store.compactedRevision)
        #expect(copy.store.liveKeys == original.store.liveKeys)
        for rev in original.store.compactedRevision...original.store.revision {
            var request = RangeRequest(key: [0], rangeEnd: [0])
            request.revision = rev
            #expect(try copy.store.range(request) == original.store.range(request), "revision \(rev)")
        }
        #expect(copy.leases.leases == original.leases.leases)
        #expect(copy.leases.leaseOfKey == original.leases.leaseOfKey)
        #expect(try copy.hashKV().hash == original.hashKV().hash)
        #expect(copy.snapshot() == original.snapshot())
        // And both continue identically.
        let a = original.apply(.leaseRevoke(id: 11))
        let c = copy.apply(.leaseRevoke(id: 11))
        #expect(a.1 == c.1)
    }

    @Test func hashSeparatesHistoriesAndRevisions() throws {
        let a = randomMachine(seed: 2)
        let b2 = randomMachine(seed: 2)
        #expect(try a.hashKV().hash == b2.hashKV().hash)
        _ = b2.apply(.put(PutRequest(key: b("extra"), value: [])))
        #expect(try a.hashKV().hash != b2.hashKV().hash)
        #expect(try a.hashKV(revision: a.store.revision).hash == b2.hashKV(revision: a.store.revision).hash,
                "hashing at an earlier revision ignores later changes")
        #expect(throws: KVError.futureRevision) { try a.hashKV(revision: a.store.revision + 1) }

        // etcd's HashByRev: at or below the compaction is gone; the current
        // revision stays hashable when it is the compaction; never compacted is -1.
        let fresh = KVStateMachine()
        _ = fresh.apply(.put(PutRequest(key: b("k"), value: b("1"))))
        #expect(try fresh.hashKV().compactRevision == -1)
        _ = fresh.apply(.put(PutRequest(key: b("k"), value: b("2"))))
        _ = fresh.apply(.compact(revision: 3))
        #expect(throws: KVError.compacted) { try fresh.hashKV(revision: 3) }
        #expect(try fresh.hashKV().compactRevision == 3)
        // A negative revision hashes no version (etcd's upper bound is below
        // every key), and answers with the current revision.
        let none = try fresh.hashKV(revision: -1)
        #expect(none.hash == (try KVStateMachine().hashKV(revision: -1).hash) && none.revision == 3)
        #expect(none.hash != (try fresh.hashKV().hash))
    }

    /// Damaged snapshots are refused with an error, never a crash, and leave the
    /// state machine untouched.
    @Test func damagedSnapshotsAreRefusedSafely() throws {
        let bytes = randomMachine(seed: 3, steps: 60).snapshot()
        var rng = SeededRandom(seed: 9)
        let target = randomMachine(seed: 4, steps: 20)
        let before = target.snapshot()
        for round in 0..<3_000 {
            var damaged = bytes
            switch round % 3 {
            case 0: damaged.removeLast(Int.random(in: 1...damaged.count, using: &rng))
            case 1:
                let i = Int.random(in: 0..<damaged.count, using: &rng)
                damaged[i] ^= UInt8.random(in: 1...255, using: &rng)
            default:
                let i = Int.random(in: 0..<(damaged.count - 8), using: &rng)
                for j in 0..<8 { damaged[i + j] = 0xFF }
            }
            let probe = KVStateMachine()
            do {
                try probe.restore(damaged)
            } catch {
                continue
            }
        }
        #expect(throws: SnapshotDecodeError.self) { try target.restore(Array(bytes.prefix(10))) }
        #expect(target.snapshot() == before)
    }

    /// A version 2 snapshot (an older leader's: no member directory in it)
    /// restores the keys and leaves the member directory as it was (review
    /// finding: it emptied it, and the transport then knew no peers).
    @Test func aSnapshotWithoutADirectoryKeepsTheMembers() throws {
        let source = randomMachine(seed: 5)
        // Without members, version 3's directory is its last 24 bytes
        // (cluster id, member count 0, removed count 0).
        var bytes = source.snapshot()
        bytes[4] = 2
        bytes.removeLast(24)
        let target = KVStateMachine()
        let member = Member(id: 9, name: "n9", peerURLs: ["http://10.0.0.9:2380"])
        target.replaceMembers(clusterID: 77, with: [member])
        try target.restore(bytes)
        #expect(target.store.revision == source.store.revision)
        #expect(target.members.clusterID == 77 && target.members.members[9] == member)
    }
}
