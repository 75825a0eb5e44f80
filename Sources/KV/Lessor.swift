/// The leader's lease clock: when each lease expires, in the leader's monotonic
/// time. Pure — time is passed in — so it is tested like the Raft core. Only
/// the leader keeps one; expiries become `revoke` proposals, keep-alives renew
/// here without touching the log, and periodic checkpoints replicate the
/// remaining TTLs so a new leader continues the countdown instead of restarting it.
public struct Lessor: Sendable {
    /// Deadlines in seconds of the leader's monotonic clock.
    public private(set) var deadlines: [LeaseID: Double] = [:]
    /// How often remaining TTLs are checkpointed through the log (the
    /// server sets `--lease-checkpoint-interval`, 5 s by default).
    public var checkpointInterval: Double = 5 * 60
    /// Checkpoints per second a round goes out at, at least: a round is
    /// spread over its interval (at `max(checkpointRate, leases / interval)`
    /// per second, up to a second's worth at once), so many long leases
    /// are checkpointed every interval still, in entries spread over it
    /// instead of a burst of them all at once.
    public var checkpointRate: Double = 1_000
    /// The current round's rate.
    private var roundRate: Double = 1_000
    private var lastCheckpoint: Double = 0
    /// The current round's leases not yet checkpointed, next last.
    private var checkpointRound: [LeaseID] = []
    /// Checkpoints the rate allows now (up to a second's worth), and when
    /// that was counted.
    private var checkpointTokens: Double = 0
    private var tokensCounted: Double = 0
    /// No deadline is earlier than this (a renewal only moves one later):
    /// ``expired(now:skipping:)`` scans the leases only once it has passed,
    /// not at every tick (review finding: a scan of every lease ten times a
    /// second on the apply thread; etcd keeps a heap).
    private var earliest = Double.infinity

    public init() {}

    /// Becoming leader: every lease counts down from its checkpointed remaining
    /// TTL (or its full TTL) starting now. `extra` adds grace for the election
    /// itself, as etcd extends leases on promotion.
    public mutating func promote(_ table: LeaseTable, now: Double, extra: Double = 0) {
        deadlines = [:]
        for (id, lease) in table.leases {
            let remaining = lease.checkpointTTL > 0 ? lease.checkpointTTL : lease.grantedTTL
            deadlines[id] = now + Double(remaining) + extra
        }
        earliest = deadlines.values.min() ?? .infinity
        // The first checkpoint once the grace is spent, not a whole interval
        // on: leaders that each last less than the interval would otherwise
        // all restart from the same checkpoint, and no lease would expire.
        lastCheckpoint = now - checkpointInterval + min(checkpointInterval, max(extra, 1))
        checkpointRound = []
        roundRate = checkpointRate
        checkpointTokens = checkpointRate
        tokensCounted = now
    }

    /// No longer leader: expiry is someone else's business.
    public mutating func demote() {
        deadlines = [:]
        earliest = .infinity
    }

    /// A lease was granted (applied): it expires a full TTL from now.
    public mutating func granted(_ lease: Lease, now: Double) {
        deadlines[lease.id] = now + Double(lease.grantedTTL)
        earliest = min(earliest, now + Double(lease.grantedTTL))
    }

    public mutating func revoked(_ id: LeaseID) { deadlines[id] = nil }

    /// The answer to a keep-alive.
    public struct Renewal: Sendable, Equatable {
        /// The TTL granted again, or 0 for an unknown or expired lease (etcd's
        /// client treats TTL <= 0 as expired).
        public var ttl: Int64
        /// The lease had a checkpointed TTL, now stale: propose a checkpoint of 0
        /// so a new leader does not expire it early (as etcd's `Renew` does).
        public var clearCheckpoint: Bool

        public init(ttl: Int64, clearCheckpoint: Bool) {
            self.ttl = ttl
            self.clearCheckpoint = clearCheckpoint
        }
    }

    /// A keep-alive, served without the log. `arrived`: when it reached the
    /// leader, if before `now` — one that came in time is not refused for
    /// having waited behind a long apply (the caller makes sure the lease's
    /// revocation is not already on its way).
    public mutating func renew(_ id: LeaseID, in table: LeaseTable, now: Double, arrived: Double? = nil) -> Renewal {
        let asOf = min(arrived ?? now, now)
        guard let lease = table.leases[id], let deadline = deadlines[id], deadline > asOf else {
            return Renewal(ttl: 0, clearCheckpoint: false)
        }
        deadlines[id] = now + Double(lease.grantedTTL)
        // (Earlier than before only after a promotion's grace.)
        earliest = min(earliest, now + Double(lease.grantedTTL))
        return Renewal(ttl: lease.grantedTTL, clearCheckpoint: lease.checkpointTTL > 0)
    }

    /// Seconds left, truncated as etcd's TimeToLive reports them (a fresh 10 s
    /// lease reads 9 a moment later); -1 when unknown here.
    public func remaining(_ id: LeaseID, now: Double) -> Int64 {
        guard let deadline = deadlines[id] else { return -1 }
        return Int64((deadline - now).rounded(.towardZero))
    }

    /// Leases whose deadline has passed, in id order: propose their revocation.
    /// Whether `id` counts down here and its deadline has passed.
    public func isExpired(_ id: LeaseID, now: Double) -> Bool {
        deadlines[id].map { $0 <= now } ?? false
    }

    /// `skipping`: leases left out (their revocation is already on its way),
    /// so they are not sorted again and again while it is.
    public mutating func expired(now: Double, skipping: (LeaseID) -> Bool = { _ in false }) -> [LeaseID] {
        guard now >= earliest else { return [] }
        earliest = deadlines.values.min() ?? .infinity
        // The longest expired first: under a revocation rate limit they go first.
        return deadlines.filter { $0.value <= now && !skipping($0.key) }.sorted { ($0.value, $0.key) < ($1.value, $1.key) }
            .map(\.key)
    }

    /// Remaining TTLs to replicate: a round over every lease starts once per
    /// `checkpointInterval` (never when it is 0 or less) and is handed out
    /// spread over the interval (``checkpointRate``); a round still running
    /// when the next is due finishes first. `wanted` leaves leases out without spending
    /// the rate on them (those with nothing worth replicating).
    public mutating func checkpointsDue(
        now: Double, wanted: (LeaseID, Int64) -> Bool = { _, _ in true }
    ) -> [(id: LeaseID, remaining: Int64)] {
        guard checkpointInterval > 0 else { return [] }
        if checkpointRound.isEmpty {
            guard now - lastCheckpoint >= checkpointInterval else { return [] }
            lastCheckpoint = now
            checkpointRound = deadlines.keys.sorted(by: >)
            roundRate = max(checkpointRate, Double(checkpointRound.count) / checkpointInterval)
        }
        checkpointTokens = min(roundRate, checkpointTokens + max(0, now - tokensCounted) * roundRate)
        tokensCounted = now
        var due: [(id: LeaseID, remaining: Int64)] = []
        while checkpointTokens >= 1, let id = checkpointRound.popLast() {
            guard deadlines[id] != nil else { continue }
            let left = remaining(id, now: now)
            guard wanted(id, left) else { continue }
            due.append((id, left))
            checkpointTokens -= 1
        }
        return due
    }
}
