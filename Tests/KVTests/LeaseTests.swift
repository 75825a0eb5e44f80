import KV
import Testing

@Suite struct LeaseTests {
    @Test func keysLiveAndDieWithTheirLease() throws {
        let kv = KVStateMachine()
        let (granted, _) = kv.apply(.leaseGrant(id: 7, ttl: 1))
        guard case let .success(.leaseGrant(lease, _)) = granted else { Issue.record("\(granted)"); return }
        #expect(lease.grantedTTL == 2, "raised to the minimum TTL")
        _ = kv.apply(.put(PutRequest(key: b("a"), value: b("1"), lease: 7)))
        _ = kv.apply(.put(PutRequest(key: b("b"), value: b("2"), lease: 7)))
        _ = kv.apply(.put(PutRequest(key: b("c"), value: b("3"))))
        #expect(kv.leases.leases[7]?.keys == [b("a"), b("b")])
        let before = kv.store.revision
        let (revoked, events) = kv.apply(.leaseRevoke(id: 7))
        #expect(revoked == .success(.leaseRevoke(revision: before + 1)), "both keys go in one revision")
        #expect(events.map(\.kind) == [.delete, .delete])
        #expect(try kv.store.range(RangeRequest(key: [0], rangeEnd: [0])).kvs.map(\.key) == [b("c")])
        #expect(kv.apply(.leaseRevoke(id: 7)).0 == .failure(.lease(.notFound)))
    }

    @Test func attachmentsFollowPutsAndDeletes() {
        let kv = KVStateMachine()
        _ = kv.apply(.leaseGrant(id: 1, ttl: 10))
        _ = kv.apply(.leaseGrant(id: 2, ttl: 10))
        _ = kv.apply(.put(PutRequest(key: b("k"), value: b("v"), lease: 1)))
        _ = kv.apply(.put(PutRequest(key: b("k"), value: b("w"), lease: 2)))
        #expect(kv.leases.leases[1]?.keys.isEmpty == true)
        #expect(kv.leases.leases[2]?.keys == [b("k")])
        _ = kv.apply(.deleteRange(DeleteRangeRequest(key: b("k"))))
        #expect(kv.leases.leases[2]?.keys.isEmpty == true)
        // Revoking a lease whose key was overwritten without a lease leaves it alone.
        _ = kv.apply(.put(PutRequest(key: b("x"), value: b("1"), lease: 1)))
        _ = kv.apply(.put(PutRequest(key: b("x"), value: b("2"))))
        _ = kv.apply(.leaseRevoke(id: 1))
        #expect((try? kv.store.range(RangeRequest(key: b("x"))).kvs.count) == 1)
    }

    @Test func grantErrorsAndUnknownLeases() {
        let kv = KVStateMachine()
        _ = kv.apply(.leaseGrant(id: 5, ttl: 10))
        #expect(kv.apply(.leaseGrant(id: 5, ttl: 10)).0 == .failure(.lease(.alreadyExists)))
        #expect(kv.apply(.leaseGrant(id: 6, ttl: LeaseTable.maxTTL + 1)).0 == .failure(.lease(.ttlTooLarge)))
        #expect(kv.apply(.put(PutRequest(key: b("k"), value: [], lease: 99))).0 == .failure(.kv(.leaseNotFound)))
        #expect(LeaseError.alreadyExists.description == "etcdserver: lease already exists")
    }

    @Test func lessorExpiresRenewsAndResumesFromCheckpoints() {
        let kv = KVStateMachine()
        _ = kv.apply(.leaseGrant(id: 1, ttl: 10))
        _ = kv.apply(.leaseGrant(id: 2, ttl: 100))
        var lessor = Lessor()
        lessor.checkpointInterval = 30
        lessor.promote(kv.leases, now: 0)
        #expect(lessor.expired(now: 9.5).isEmpty)
        #expect(lessor.renew(1, in: kv.leases, now: 9.5) == .init(ttl: 10, clearCheckpoint: false))
        #expect(lessor.expired(now: 19).isEmpty)
        #expect(lessor.expired(now: 19.5) == [1])
        #expect(lessor.renew(1, in: kv.leases, now: 20).ttl == 0, "an expired lease is not renewed")
        // One that arrived before the deadline and waited behind a long apply is.
        if let lease = kv.leases.leases[1] { lessor.granted(lease, now: 20) }
        #expect(lessor.renew(1, in: kv.leases, now: 30.5, arrived: 29.8).ttl == 10)
        #expect(lessor.remaining(1, now: 31) == 9, "a full TTL from when it is served")
        #expect(lessor.renew(1, in: kv.leases, now: 41, arrived: 40.6).ttl == 0)
        #expect(lessor.remaining(2, now: 40.2) == 59, "truncated, as etcd reports it")
        // A checkpoint replicates the remaining TTL; a new leader continues from it.
        let due = lessor.checkpointsDue(now: 40)
        #expect(due.contains { $0.id == 2 && $0.remaining == 60 })
        // Renewing a checkpointed lease asks for the stale checkpoint to be cleared.
        _ = kv.apply(.leaseCheckpoint(due.map { KVStateMachine.LeaseCheckpoint(id: $0.id, remainingTTL: $0.remaining) }))
        var next = Lessor()
        next.promote(kv.leases, now: 1_000)
        #expect(next.checkpointsDue(now: 1_000.5).isEmpty)
        #expect(!next.checkpointsDue(now: 1_001).isEmpty, "the first checkpoint after the grace, not a whole interval on")
        #expect(next.checkpointsDue(now: 1_002).isEmpty)
        #expect(next.expired(now: 1_009).isEmpty, "before the earliest deadline: no scan, nothing")
        #expect(next.expired(now: 1_010.5) == [1])
        #expect(next.expired(now: 1_060.5) == [1, 2])
        // The bound follows grants and renewals made after a scan.
        var bound = Lessor()
        bound.promote(kv.leases, now: 2_000)
        #expect(bound.expired(now: 2_001).isEmpty)
        _ = kv.apply(.leaseGrant(id: 3, ttl: 2))
        if let lease = kv.leases.leases[3] { bound.granted(lease, now: 2_002) }
        #expect(bound.expired(now: 2_004.5) == [3], "a lease granted after the scan, due before the old bound")
        bound.revoked(3)
        #expect(bound.renew(1, in: kv.leases, now: 2_005).ttl == 10)
        #expect(bound.expired(now: 2_015.5) == [1], "renewed to before the promotion's later deadline")
        #expect(next.remaining(2, now: 1_000) == 60, "not reset to the full 100 s")
        #expect(next.remaining(99, now: 1_000) == -1)
        #expect(next.renew(2, in: kv.leases, now: 1_001).clearCheckpoint)
        // An interval of 0 turns checkpoints off.
        next.checkpointInterval = 0
        #expect(next.checkpointsDue(now: 5_000).isEmpty)
    }

    /// A round of checkpoints is spread over its interval (at least
    /// `checkpointRate` per second): more leases than one burst allows go out
    /// over the following ticks, every lease once per round, instead of all
    /// of them in one batch every interval (review finding); a round of many
    /// leases still ends within its interval.
    @Test func checkpointsAreSpreadAndEveryLeaseGetsItsTurn() {
        let kv = KVStateMachine()
        for id in 1...2_500 { _ = kv.apply(.leaseGrant(id: Int64(id), ttl: 600)) }
        var lessor = Lessor()
        lessor.checkpointInterval = 5
        lessor.checkpointRate = 1_000
        lessor.promote(kv.leases, now: 0, extra: 1)
        var seen: [LeaseID: Int] = [:]
        var perTick: [Int] = []
        for tick in 1...100 {
            let due = lessor.checkpointsDue(now: Double(tick) / 10)
            perTick.append(due.count)
            for checkpoint in due { seen[checkpoint.id, default: 0] += 1 }
        }
        #expect(seen.count == 2_500 && seen.values.allSatisfy { $0 == 2 }, "two rounds in 10 s, each lease once per round")
        #expect(perTick.max() == 1_000, "a burst of at most a second's worth")
        for start in 0..<(perTick.count - 10) {
            #expect(perTick[start..<(start + 10)].reduce(0, +) <= 2_000, "at most the burst and the rate in any second")
        }
        // Leases the caller does not want cost none of the rate.
        var picky = Lessor()
        picky.checkpointInterval = 5
        picky.checkpointRate = 10
        picky.promote(kv.leases, now: 0, extra: 1)
        let wanted = picky.checkpointsDue(now: 1) { id, _ in id % 100 == 0 }
        #expect(wanted.map(\.id) == Array(stride(from: 100, through: 2_500, by: 100)), "the round's rate is 500/s here")
        // 12,000 leases at an interval of 5 s: 2,400 per second, every lease
        // in each round.
        let many = KVStateMachine()
        for id in 1...12_000 { _ = many.apply(.leaseGrant(id: Int64(id), ttl: 600)) }
        var big = Lessor()
        big.checkpointInterval = 5
        big.checkpointRate = 1_000
        big.promote(many.leases, now: 0, extra: 1)
        var counts: [LeaseID: Int] = [:]
        for tick in 1...109 {
            for checkpoint in big.checkpointsDue(now: Double(tick) / 10) { counts[checkpoint.id, default: 0] += 1 }
        }
        #expect(counts.count == 12_000 && counts.values.allSatisfy { $0 == 2 }, "two whole rounds in 10.9 s (rounds start at 1 s and 6 s)")
    }
}
