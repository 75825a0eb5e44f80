import EnsembleAPI
import KV

/// The leader's side of leases. Only the leader keeps a running ``Lessor``:
/// it decides expiry and proposes the revocation through the log, renews on
/// keep-alive without the log, and checkpoints remaining TTLs through the log so
/// that a new leader continues each countdown instead of restarting it (etcd
/// 3.4 restarts it unless lease checkpointing is enabled). Everything here runs
/// on the member's apply thread (docs/node.md).
extension KVReplica {
    public func roleChanged(isLeader: Bool) {
        leading = isLeader
        revoking = [:]
        staleCheckpoints = []
        checkpointsInFlight = []
        revokeTokens = Self.revokesPerSecond / 2
        lastRevokeTick = now()
        expiredQueue = []
        arrivingKeepAlives = [:]
        if isLeader {
            lessor.promote(machine.leases, now: now(), extra: promotionGrace)
        } else {
            lessor.demote()
        }
    }

    /// Revocations proposed per second at most (etcd's leaseRevokeRate): a
    /// mass expiry (many clients gone at once) becomes a steady stream of
    /// small entries, not one apply that holds up everything behind it.
    static let revokesPerSecond = 1_000.0

    /// Expired leases become revoke proposals (one each, as etcd proposes
    /// them; the longest expired first, within the rate; re-proposed after
    /// 3 s if not applied); due checkpoints and cleared checkpoints become one
    /// checkpoint proposal.
    public func leaderTick() -> [[UInt8]] {
        guard leading else { return [] }
        let time = now()
        var out: [[UInt8]] = []
        // Half a second of burst (etcd revokes every 500 ms), or one tick's
        // worth when ticks are further apart (a long --heartbeat-interval):
        // the rate holds for ticks up to a second apart. Never more than a
        // second's worth at once, even after a stall.
        let elapsed = max(time - lastRevokeTick, 0)
        revokeTokens = min(revokeTokens + elapsed * Self.revokesPerSecond, Self.revokesPerSecond * min(max(elapsed, 0.5), 1))
        lastRevokeTick = time
        // The expired leases are found and sorted once per drain, not per
        // tick: a mass expiry takes many ticks to revoke at this rate.
        if revokeTokens >= 1 && expiredQueue.isEmpty {
            // Those proposed < 3 s ago are left out: under CORRUPT, or while
            // nothing commits, they would be sorted again every tick.
            // (On a copy: the filter reads the lessor's deadlines.)
            var scanned = lessor
            expiredQueue = scanned.expired(now: time, skipping: { id in
                revoking[id].map { time - $0 < 3 } ?? false || heldByKeepAlive(id, now: time)
            }).reversed()
            lessor = scanned
        }
        while revokeTokens >= 1, let id = expiredQueue.popLast() {
            // Renewed or revoked since it was queued, proposed < 3 s ago, or
            // a keep-alive that came in time is on its way.
            guard lessor.isExpired(id, now: time), revoking[id].map({ time - $0 >= 3 }) ?? true,
                !heldByKeepAlive(id, now: time)
            else { continue }
            revokeTokens -= 1
            revoking[id] = time
            var command = Ensemble_V1_Command()
            command.leaseRevoke.id = id
            if let data = try? Self.encode(command) { out.append(data) }
        }
        // A remaining TTL of 0 would mean "no checkpoint" (full TTL): a lease
        // about to expire is recorded with 1 s left instead.
        // Leases with nothing to say are left out (a checkpoint of the full TTL
        // and no checkpoint mean the same to a new leader), and so are leases
        // no longer than the interval, as etcd schedules checkpoints: a new
        // leader's full TTL gives them at most that much more, the bound a
        // checkpoint keeps anyway — and the many short leases of a registry
        // then cost no checkpoint, nor a clearing one after each renewal.
        let interval = lessor.checkpointInterval
        let leases = machine.leases.leases
        var checkpoints = lessor.checkpointsDue(now: time) { id, remaining in
            guard let lease = leases[id] else { return false }
            return max(remaining, 1) < lease.grantedTTL && Double(lease.grantedTTL) > interval
        }.map { Self.checkpoint(id: $0.id, remaining: max($0.remaining, 1)) }
        // A round goes out over many ticks: the marks of earlier ticks stay
        // until their entries apply (leaseApplied) or leadership ends.
        checkpointsInFlight.formUnion(checkpoints.map(\.id))
        // Stale checkpoints are cleared unless a fresh one replaces them (a
        // short lease left with one by an earlier leader is cleared too).
        if !staleCheckpoints.isEmpty {
            let kept = Set(checkpoints.map(\.id))
            checkpoints += staleCheckpoints.sorted()
                .filter { !kept.contains($0) && (machine.leases.leases[$0]?.checkpointTTL ?? 0) > 0 }
                .map { Self.checkpoint(id: $0, remaining: 0) }
            staleCheckpoints = []
        }
        for start in stride(from: 0, to: checkpoints.count, by: 1_000) {
            var command = Ensemble_V1_Command()
            command.leaseCheckpoints.checkpoints = Array(checkpoints[start..<min(start + 1_000, checkpoints.count)])
            if let data = try? Self.encode(command) { out.append(data) }
        }
        return out
    }

    /// Whether a renewal of `id` must clear a checkpoint before it is
    /// answered: one applied, or one a checkpoint round has proposed.
    public func renewalClears(_ id: LeaseID) -> Bool {
        (machine.leases.leases[id]?.checkpointTTL ?? 0) > 0 || checkpointsInFlight.contains(id)
    }

    /// The entry that clears the checkpoints of `ids` (a remaining TTL of
    /// 0: a new leader starts them from their full TTL).
    public static func clearingCheckpoints(_ ids: [LeaseID]) -> [UInt8]? {
        var command = Ensemble_V1_Command()
        command.leaseCheckpoints.checkpoints = ids.map { checkpoint(id: $0, remaining: 0) }
        return try? encode(command)
    }

    private static func checkpoint(id: LeaseID, remaining: Int64) -> Ensemble_V1_LeaseCheckpoint {
        var checkpoint = Ensemble_V1_LeaseCheckpoint()
        checkpoint.id = id
        checkpoint.remainingTtl = remaining
        return checkpoint
    }

    /// Keeps the lessor in step with applied grants and revocations.
    func leaseApplied(_ command: KVStateMachine.Command, _ result: Result) {
        guard leading else { return }
        switch (command, result) {
        case let (.leaseGrant, .success(.leaseGrant(lease, _))):
            lessor.granted(lease, now: now())
        case (.leaseRevoke, .failure(.kv(.corrupt))):
            // Refused while CORRUPT is raised: the lease stays due and its
            // revocation is proposed again after 3 s (etcd retries too).
            break
        case let (.leaseRevoke(id), _):
            // Applied or already gone: either way it no longer counts down.
            lessor.revoked(id)
            revoking[id] = nil
        case let (.leaseCheckpoint(checkpoints), _):
            for checkpoint in checkpoints { checkpointsInFlight.remove(checkpoint.id) }
            // A keep-alive between proposing a checkpoint and applying it left
            // a lower remaining TTL in the log than the lease has: cleared in
            // the next tick, so a new leader does not start from it.
            let time = now()
            for checkpoint in checkpoints where checkpoint.remainingTTL > 0 {
                if lessor.remaining(checkpoint.id, now: time) > checkpoint.remainingTTL + 1 {
                    staleCheckpoints.insert(checkpoint.id)
                }
            }
        default:
            break
        }
    }

    /// How long a keep-alive on its way holds its lease's expiry: a
    /// leadership confirmation takes a heartbeat round, or longer while the
    /// followers' disks are slow, and gives up after the request timeout
    /// (`NodeLoop.Options.requestTimeout`, 7 s).
    static let keepAliveHold = 7.0

    /// Keep-alives for `ids` reached this leader and wait for it to confirm
    /// its leadership: a lease that comes due meanwhile is not revoked under
    /// them (its deadline passing while the followers' acknowledgements are
    /// slow is no reason; the keep-alive came in time and renews it).
    /// `waited`: seconds since the keep-alive arrived (it counts from then).
    /// Returns the arrival time to hand to ``keepAlivesSettled(_:arrived:)``.
    public func keepAlivesArrived(_ ids: [LeaseID], waited: Double = 0) -> Double {
        let time = now() - max(waited, 0)
        guard leading else { return time }
        for id in ids { arrivingKeepAlives[id, default: []].append(time) }
        return time
    }

    /// The keep-alives of ``keepAlivesArrived(_:)`` renewed or gave up.
    public func keepAlivesSettled(_ ids: [LeaseID], arrived: Double) {
        for id in ids {
            guard var times = arrivingKeepAlives[id], let index = times.firstIndex(of: arrived) else { continue }
            times.remove(at: index)
            arrivingKeepAlives[id] = times.isEmpty ? nil : times
        }
    }

    /// Whether a keep-alive that arrived before `id`'s deadline, less than
    /// ``keepAliveHold`` ago, is still on its way.
    func heldByKeepAlive(_ id: LeaseID, now time: Double) -> Bool {
        guard let times = arrivingKeepAlives[id], let deadline = lessor.deadlines[id] else { return false }
        return times.contains { $0 < deadline && time - $0 < Self.keepAliveHold }
    }

    /// A keep-alive's answer while its lease has expired but is not yet
    /// revoked: ask again (``renew(_:waited:)``).
    public static let revocationPending: Int64 = -1

    /// What a keep-alive gets: the TTL granted again, 0 for a lease that does
    /// not exist, or ``revocationPending`` for one that expired and whose
    /// revocation has not applied yet — as etcd's `Renew` waits for it, so a
    /// client told TTL 0 no longer finds the lease's keys, and a leader that
    /// fails first leaves the lease to the next one. nil: this member does
    /// not lead, so it cannot renew (the caller forwards to the leader).
    /// `waited`: seconds since the keep-alive arrived here; it renews a
    /// lease that was alive then, unless the lease's revocation has been
    /// proposed since.
    public func renew(_ id: LeaseID, waited: Double = 0) -> Int64? {
        guard leading else { return nil }
        guard machine.leases.leases[id] != nil else { return 0 }
        if revoking[id] != nil { return Self.revocationPending }
        let time = now()
        let renewal = lessor.renew(id, in: machine.leases, now: time, arrived: time - max(waited, 0))
        if renewal.clearCheckpoint { staleCheckpoints.insert(id) }
        return renewal.ttl > 0 ? renewal.ttl : Self.revocationPending
    }

    /// A lease's remaining and granted TTL and its keys, as LeaseTimeToLive
    /// reports them. nil: this member does not lead. A lease that does not
    /// exist reports a remaining TTL of -1 (etcd's answer).
    public func timeToLive(_ id: LeaseID) -> (remaining: Int64, granted: Int64, keys: [[UInt8]])? {
        guard leading else { return nil }
        guard let lease = machine.leases.leases[id] else { return (-1, 0, []) }
        // Past its deadline with the revocation not applied yet: the negative
        // remainder, truncated to seconds, as etcd's l.Remaining().Seconds()
        // (-1 a second or more overdue, which etcdctl prints "already expired").
        let remaining = lessor.deadlines[id] == nil ? 0 : lessor.remaining(id, now: now())
        return (remaining, lease.grantedTTL, lease.keys.sorted { $0.lexicographicallyPrecedes($1) })
    }
}
