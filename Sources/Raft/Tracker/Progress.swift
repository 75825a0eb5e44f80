/// The leader's view of one follower's log (Raft paper Fig. 2: nextIndex and
/// matchIndex), plus the replication state machine of etcd-io/raft.
///
/// Invariant: `match < next`.
struct Progress: Sendable {
    enum State: Sendable, Equatable {
        /// Sends one AppendEntries per heartbeat until the follower's position is found.
        case probe
        /// Position known: streams entries optimistically, bounded by `inflights`.
        case replicate
        /// Waiting for a snapshot at `pendingSnapshot` to be installed.
        case snapshot
    }

    var match: UInt64 = 0
    var next: UInt64
    var state: State = .probe
    /// Index of the snapshot being sent, while `state == .snapshot`.
    var pendingSnapshot: UInt64 = 0
    /// In probe state: one message is out, wait for its answer or a heartbeat.
    var probeSent = false
    /// Heard from since the last check-quorum round.
    var recentActive = false
    var isLearner: Bool
    var inflights: Inflights

    init(next: UInt64, isLearner: Bool, maxInflight: Int, maxInflightBytes: Int) {
        self.next = next
        self.isLearner = isLearner
        self.inflights = Inflights(capacity: maxInflight, maxBytes: maxInflightBytes)
    }

    /// Whether sending another AppendEntries now would overrun the follower.
    var isPaused: Bool {
        switch state {
        case .probe: probeSent
        case .replicate: inflights.isFull
        case .snapshot: true
        }
    }

    mutating func becomeProbe() {
        // After a snapshot the follower has at least the snapshot index.
        if state == .snapshot {
            let pending = pendingSnapshot
            reset(.probe)
            next = max(match + 1, pending + 1)
        } else {
            reset(.probe)
            next = match + 1
        }
    }

    mutating func becomeReplicate() {
        reset(.replicate)
        next = match + 1
    }

    mutating func becomeSnapshot(index: UInt64) {
        reset(.snapshot)
        pendingSnapshot = index
    }

    private mutating func reset(_ newState: State) {
        state = newState
        probeSent = false
        pendingSnapshot = 0
        inflights.reset()
    }

    /// Records an acknowledgement up to `index`. Returns false for a stale one.
    mutating func maybeUpdate(_ index: UInt64) -> Bool {
        var updated = false
        if match < index {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index + 1)
        return updated
    }

    /// Records that entries up to `last` were sent (optimistic in replicate state).
    mutating func sentEntries(last: UInt64, bytes: Int, count: Int) {
        switch state {
        case .replicate:
            if count > 0 {
                next = last + 1
                inflights.add(index: last, bytes: bytes)
            }
        case .probe:
            probeSent = true
        case .snapshot:
            break
        }
    }

    /// Handles a rejected AppendEntries for prevLogIndex `rejected`; `hint` is the
    /// next index worth probing. Returns false when the rejection is stale
    /// (pipelining reorders responses; a stale one must not move `next` back).
    mutating func maybeDecrease(rejected: UInt64, hint: UInt64) -> Bool {
        if state == .replicate {
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        if next - 1 != rejected { return false }
        next = max(min(rejected, hint + 1), match + 1)
        probeSent = false
        return true
    }
}
