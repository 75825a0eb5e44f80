import EnsembleAPI
@testable import EnsembleServer
import Foundation
import KV
import SwiftProtobuf
import Synchronization
import Testing

/// The leader's lease clock in ``KVReplica``: expiry proposed by the leader
/// only, keep-alives, and remaining TTLs that survive a change of leader.
@Suite struct LeaseLeadershipTests {
    final class FakeClock: Sendable {
        let seconds = Mutex(0.0)
        func advance(_ by: Double) { seconds.withLock { $0 += by } }
        var read: @Sendable () -> Double { { [self] in seconds.withLock { $0 } } }
    }

    func grant(_ id: Int64, ttl: Int64) throws -> [UInt8] {
        try command {
            $0.leaseGrant.id = id
            $0.leaseGrant.ttl = ttl
        }
    }

    func decoded(_ entries: [[UInt8]]) throws -> [Ensemble_V1_Command] {
        try entries.map { try Ensemble_V1_Command(serializedBytes: $0) }
    }

    @Test func onlyTheLeaderProposesExpiryAndTheRevocationDeletesKeys() throws {
        let clock = FakeClock()
        let replica = KVReplica(checkpointInterval: 1_000, now: clock.read)
        _ = replica.apply(try grant(7, ttl: 10), index: 1)
        _ = replica.apply(try putCommand("k", "v", lease: 7), index: 2)
        clock.advance(20)
        #expect(replica.leaderTick().isEmpty, "a follower never expires leases")

        replica.roleChanged(isLeader: true)
        clock.advance(11)
        #expect(replica.leaderTick().isEmpty, "promotion restarts the countdown, plus grace")
        clock.advance(1.5)
        let proposed = try decoded(replica.leaderTick())
        #expect(proposed.map(\.leaseRevoke.id) == [7])
        clock.advance(1)
        #expect(replica.leaderTick().isEmpty, "one revocation in flight at a time")
        clock.advance(3)
        #expect(try decoded(replica.leaderTick()).map(\.leaseRevoke.id) == [7], "re-proposed if never applied")

        _ = replica.apply(try command { $0.leaseRevoke.id = 7 }, index: 3)
        #expect(replica.read(RangeRequest(key: Array("k".utf8))).map(\.kvs.count) == .success(0))
        clock.advance(100)
        #expect(replica.leaderTick().isEmpty)
    }

    /// A mass expiry is revoked at etcd's rate, 1,000 a second, the longest
    /// expired first: half a second's burst, or a tick's worth when ticks
    /// are further apart, never more than a second's worth after a stall.
    @Test func revocationsAreRateLimited() throws {
        let clock = FakeClock()
        let replica = KVReplica(checkpointInterval: 1_000, now: clock.read)
        for id in 1...3_000 { _ = replica.apply(try grant(Int64(id), ttl: id <= 600 ? 10 : 20), index: UInt64(id)) }
        replica.roleChanged(isLeader: true)
        var index: UInt64 = 3_000
        /// One tick's revocations, applied as the log would.
        func tick() throws -> [Int64] {
            let revoked = try decoded(replica.leaderTick()).map(\.leaseRevoke.id).filter { $0 != 0 }
            for id in revoked {
                index += 1
                _ = replica.apply(try command { $0.leaseRevoke.id = id }, index: index)
            }
            return revoked
        }
        clock.advance(30)
        let first = try tick()
        #expect(first.count == 1_000, "a second's worth after a stall")
        #expect(Set(1...600).isSubset(of: Set(first)), "the 10 s leases expired first")
        clock.advance(0.1)
        #expect(try tick().count == 100)
        clock.advance(0.3)
        #expect(try tick().count == 300)
        clock.advance(1)
        #expect(try tick().count == 1_000, "ticks a second apart keep the rate")
        clock.advance(10)
        #expect(try tick().count == 600, "the rest")
        #expect(replica.machine.leases.leases.isEmpty)
    }

    /// A revocation refused while CORRUPT is raised leaves the lease due:
    /// it is proposed again, and goes once the alarm is disarmed.
    @Test func aRevocationRefusedWhileCorruptIsProposedAgain() throws {
        let clock = FakeClock()
        let replica = KVReplica(checkpointInterval: 1_000, now: clock.read)
        _ = replica.apply(try grant(7, ttl: 10), index: 1)
        replica.roleChanged(isLeader: true)
        let alarm = { (activate: Bool) throws -> [UInt8] in
            try command {
                $0.alarm.action = activate ? .activate : .deactivate
                $0.alarm.memberID = 1
                $0.alarm.alarm = .corrupt
            }
        }
        _ = replica.apply(try alarm(true), index: 2)
        clock.advance(20)
        #expect(try decoded(replica.leaderTick()).map(\.leaseRevoke.id) == [7])
        let refused = replica.apply(try command { $0.leaseRevoke.id = 7 }, index: 3)
        #expect(refused == .failure(.kv(.corrupt)))
        clock.advance(3.5)
        #expect(try decoded(replica.leaderTick()).map(\.leaseRevoke.id) == [7], "still due")
        _ = replica.apply(try alarm(false), index: 4)
        _ = replica.apply(try command { $0.leaseRevoke.id = 7 }, index: 5)
        #expect(replica.machine.leases.leases.isEmpty)
        clock.advance(10)
        #expect(replica.leaderTick().isEmpty)
    }

    @Test func keepAliveRenewsOnTheLeaderOnly() throws {
        let clock = FakeClock()
        let replica = KVReplica(checkpointInterval: 1_000, now: clock.read)
        _ = replica.apply(try grant(7, ttl: 10), index: 1)
        #expect(replica.renew(7) == nil, "a follower cannot renew")
        replica.roleChanged(isLeader: true)
        clock.advance(8)
        #expect(replica.renew(7) == 10)
        clock.advance(8)
        #expect(replica.leaderTick().isEmpty, "renewed 8 s ago with a 10 s TTL")
        #expect(replica.timeToLive(7)?.remaining == 2)
        #expect(replica.timeToLive(99)?.remaining == -1, "unknown lease")
        #expect(replica.renew(99) == 0, "unknown lease: TTL 0, not an error")
        // Review finding: a keep-alive that came in time but waited behind a
        // long apply past the deadline lost its lease.
        clock.advance(2.5)
        #expect(replica.renew(7, waited: 1) == 10)
        // Once the revocation is proposed, it is too late however early it came.
        // An expired lease is answered once its revocation has applied, as
        // etcd's Renew waits for it (review finding: TTL 0 came first).
        clock.advance(11)
        let revokes = replica.leaderTick()
        #expect(revokes.count == 1)
        // Until the revocation applies, TimeToLive reports the negative
        // remainder, truncated to seconds, as etcd's (1 s overdue: -1).
        #expect(replica.timeToLive(7)?.remaining == -1)
        #expect(replica.renew(7, waited: 5) == KVReplica.revocationPending)
        _ = replica.apply(try #require(revokes.first), index: 2)
        #expect(replica.renew(7) == 0)
    }

    /// etcd 3.4 restarts every lease's countdown on a leader change; here the
    /// leader checkpoints remaining TTLs through the log and the next leader
    /// continues from them.
    @Test func remainingTTLSurvivesALeaderChange() throws {
        let clock = FakeClock()
        let old = KVReplica(checkpointInterval: 5, now: clock.read)
        let new = KVReplica(checkpointInterval: 5, now: clock.read)
        func applyBoth(_ entry: [UInt8], _ index: UInt64) {
            _ = old.apply(entry, index: index)
            _ = new.apply(entry, index: index)
        }
        old.roleChanged(isLeader: true)
        applyBoth(try grant(7, ttl: 60), 1)
        clock.advance(40)
        let checkpoints = old.leaderTick()
        let checkpoint = try #require(try decoded(checkpoints).first?.leaseCheckpoints.checkpoints.first)
        #expect(checkpoint.id == 7 && checkpoint.remainingTtl == 20)
        for entry in checkpoints { applyBoth(entry, 2) }

        old.roleChanged(isLeader: false)
        new.roleChanged(isLeader: true)
        let remaining = try #require(new.timeToLive(7)?.remaining)
        #expect(remaining >= 20 && remaining <= 22, "continues from the checkpoint (plus grace), not from 60: \(remaining)")

        // A keep-alive makes the checkpoint stale: the leader clears it.
        #expect(new.renew(7) == 60)
        let cleared = try decoded(new.leaderTick()).first?.leaseCheckpoints.checkpoints.first
        #expect(cleared?.id == 7 && cleared?.remainingTtl == 0)
    }

    /// Leases no longer than the checkpoint interval are not checkpointed
    /// (etcd's rule): a failover adds at most their TTL, within the bound a
    /// checkpoint keeps, and short kept-alive leases cost the log nothing.
    @Test func leasesNoLongerThanTheIntervalAreNotCheckpointed() throws {
        let clock = FakeClock()
        let replica = KVReplica(checkpointInterval: 5, now: clock.read)
        replica.roleChanged(isLeader: true)
        _ = replica.apply(try grant(7, ttl: 60), index: 1)
        _ = replica.apply(try grant(8, ttl: 5), index: 2)
        _ = replica.apply(try grant(9, ttl: 4), index: 3)
        clock.advance(3)
        // The first round once the promotion's grace (2 s) is spent.
        let first = try decoded(replica.leaderTick()).flatMap { $0.leaseCheckpoints.checkpoints.map(\.id) }
        #expect(first == [7], "\(first)")
        #expect(replica.renew(8) == 5 && replica.renew(9) == 4)
        clock.advance(2.5)
        #expect(try decoded(replica.leaderTick()).isEmpty, "no round yet")
        #expect(replica.renew(8) == 5)
        clock.advance(2.5)
        let ids = try decoded(replica.leaderTick()).flatMap { $0.leaseCheckpoints.checkpoints.map(\.id) }
        #expect(ids == [7], "\(ids)")

        // A short lease an earlier leader (with a shorter interval) left a
        // checkpoint on: renewed, that checkpoint is cleared, even when the
        // clearing falls in a checkpoint round (review finding).
        var stale = Ensemble_V1_Command()
        var entry = Ensemble_V1_LeaseCheckpoint()
        entry.id = 8
        entry.remainingTtl = 2
        stale.leaseCheckpoints.checkpoints = [entry]
        _ = replica.apply(try KVReplica.encode(stale), index: 4)
        #expect(replica.machine.leases.leases[8]?.checkpointTTL == 2)
        #expect(replica.renew(8) == 5)
        clock.advance(5)
        let round = try decoded(replica.leaderTick()).flatMap { $0.leaseCheckpoints.checkpoints }
        #expect(round.contains { $0.id == 8 && $0.remainingTtl == 0 }, "\(round)")
    }

    /// A keep-alive that reached the leader in time holds its lease's expiry
    /// while the leader confirms its leadership (a heartbeat round the slow
    /// disks of followers can stretch past the deadline), then renews it; one
    /// that arrived late, or that has waited longer than the hold, does not.
    @Test func aKeepAliveOnItsWayHoldsTheExpiry() throws {
        let clock = FakeClock()
        let replica = KVReplica(checkpointInterval: 1_000, now: clock.read)
        replica.roleChanged(isLeader: true)
        _ = replica.apply(try grant(7, ttl: 3), index: 1)
        _ = replica.apply(try grant(8, ttl: 3), index: 2)
        clock.advance(2)
        let arrived = replica.keepAlivesArrived([7])
        clock.advance(1.5)
        let revoked = try decoded(replica.leaderTick()).filter { $0.leaseRevoke.id != 0 }.map(\.leaseRevoke.id)
        #expect(revoked == [8], "7 is held by its keep-alive: \(revoked)")
        #expect(replica.renew(7, waited: 1.5) == 3, "judged as of its arrival")
        replica.keepAlivesSettled([7], arrived: arrived)
        #expect(replica.arrivingKeepAlives.isEmpty)

        // Late: it arrived after the deadline, so it holds nothing.
        clock.advance(3.5)
        let late = replica.keepAlivesArrived([7])
        #expect(try decoded(replica.leaderTick()).map(\.leaseRevoke.id).contains(7))
        replica.keepAlivesSettled([7], arrived: late)

        // A hold ends after keepAliveHold, even if the keep-alive never settles.
        _ = replica.apply(try grant(9, ttl: 3), index: 3)
        clock.advance(2)
        _ = replica.keepAlivesArrived([9])
        clock.advance(2)
        #expect(!(try decoded(replica.leaderTick()).map(\.leaseRevoke.id).contains(9)))
        clock.advance(KVReplica.keepAliveHold)
        #expect(try decoded(replica.leaderTick()).map(\.leaseRevoke.id).contains(9))
    }

    /// A keep-alive between proposing a checkpoint and applying it: the
    /// checkpoint applied is stale at once, and the leader clears it.
    @Test func aCheckpointOvertakenByAKeepAliveIsCleared() throws {
        let clock = FakeClock()
        let replica = KVReplica(checkpointInterval: 5, now: clock.read)
        replica.roleChanged(isLeader: true)
        _ = replica.apply(try grant(7, ttl: 60), index: 1)
        clock.advance(40)
        let proposed = replica.leaderTick()
        #expect(try decoded(proposed).first?.leaseCheckpoints.checkpoints.first?.remainingTtl == 20)
        #expect(replica.renew(7) == 60, "renewed while the checkpoint is in flight")
        for entry in proposed { _ = replica.apply(entry, index: 2) }
        #expect(replica.machine.leases.leases[7]?.checkpointTTL == 20)
        let cleared = try decoded(replica.leaderTick()).first?.leaseCheckpoints.checkpoints.first
        #expect(cleared?.id == 7 && cleared?.remainingTtl == 0)
    }
}
