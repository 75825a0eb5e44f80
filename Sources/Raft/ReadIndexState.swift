/// A linearizable read waiting for the leader to confirm its leadership.
struct ReadRequest: Sendable {
    /// The commit index when the request arrived: the read index (thesis §6.4 step 1).
    var index: UInt64
    /// The member that asked (the leader itself for local requests).
    var from: NodeID
    var context: [UInt8]
}

/// The leader's ReadIndex bookkeeping (thesis §6.4). Requests are batched: all the
/// requests that arrive between two Readys share one heartbeat round, and rounds
/// are numbered so that an acknowledgement of round n also vouches for every
/// earlier round (it was sent after them).
struct ReadIndexState: Sendable {
    /// Arrived before the leader committed an entry of its term: the commit index
    /// is not known to be current yet (§6.4: "the leader must have committed an
    /// entry from its current term").
    var waitingForCommit: [ReadRequest] = []
    /// Ready to be confirmed by the next round.
    var unsent: [ReadRequest] = []
    /// Rounds in flight, oldest first.
    var rounds: [(number: UInt64, requests: [ReadRequest])] = []
    /// Highest round each follower has acknowledged.
    var acked: [NodeID: UInt64] = [:]
    var nextRound: UInt64 = 1

    mutating func reset() {
        waitingForCommit.removeAll()
        unsent.removeAll()
        rounds.removeAll()
        acked.removeAll()
    }

    var hasUnsent: Bool { !unsent.isEmpty }

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
