/// A linearizable read waiting for the leader to confirm its leadership.
struct ReadRequest: Sendable {
    /// The commit index when the request arrived: the read index (thesis §6.4 step 1).
    var index: UInt64
    /// The member that asked (the leader itself for local requests).
    var from: NodeID
    var context: [UInt8]
}

/// The leader's heartbeat rounds (thesis §6.4). Every heartbeat broadcast is a
/// numbered round; reads that arrived since the previous round ride on the next
/// one, so many reads share one round. A follower's acknowledgement of round n
/// also vouches for every earlier round (it was sent after them), and the send
/// time of the newest round a quorum acknowledged starts the leader lease.
struct ReadIndexState: Sendable {
    struct Round: Sendable {
        var number: UInt64
        /// Leader ticks when the round was sent.
        var sentAt: Int
        var requests: [ReadRequest]
    }

    /// Arrived before the leader committed an entry of its term: the commit index
    /// is not known to be current yet (§6.4: "the leader must have committed an
    /// entry from its current term").
    var waitingForCommit: [ReadRequest] = []
    /// Waiting for the next round.
    var unsent: [ReadRequest] = []
    /// Rounds sent and not yet confirmed by a quorum, oldest first.
    var rounds: [Round] = []
    /// Highest round each follower has acknowledged.
    var acked: [NodeID: UInt64] = [:]
    var nextRound: UInt64 = 1
    /// Leader ticks when the newest quorum-confirmed round was sent, if any.
    var leaseStart: Int?
    /// Set once a leadership transfer begins: a TimeoutNow still in flight lets
    /// the target win without waiting for leases, so no lease read is safe for
    /// the rest of the term.
    var leaseRevoked = false

    mutating func reset() {
        waitingForCommit.removeAll()
        unsent.removeAll()
        rounds.removeAll()
        acked.removeAll()
        leaseStart = nil
        leaseRevoked = false
    }

    var hasUnsent: Bool { !unsent.isEmpty }

    /// Forgets unconfirmed rounds that carry no reads once there are many (their
    /// only use is extending the lease; dropping them is conservative).
    mutating func pruneEmptyRounds(limit: Int) {
        guard rounds.count > limit, let newest = rounds.last?.number else { return }
        rounds.removeAll { $0.requests.isEmpty && $0.number != newest }
    }

    static func encode(round: UInt64) -> [UInt8] {
        withUnsafeBytes(of: round.littleEndian) { Array($0) }
    }

    static func decode(_ context: [UInt8]) -> UInt64? {
        guard context.count == 8 else { return nil }
        var round: UInt64 = 0
        for i in 0..<8 { round |= UInt64(context[i]) << (8 * UInt64(i)) }
        return round
    }
}
