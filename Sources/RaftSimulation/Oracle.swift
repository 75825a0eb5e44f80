import Raft

/// Checks Raft's safety properties (paper Figure 3) against everything the
/// simulated members do, after every step. It sees all members at once, which no
/// member can: that is what makes it an oracle.
///
/// - Election safety: at most one leader per term.
/// - Log matching: an (index, term) pair names one entry, with one predecessor term.
/// - Leader completeness: a new leader holds every entry committed before it.
/// - State machine safety: members apply the same entry at each index (checked
///   through the state machines' hash chains) and commit the same term there.
/// - Exactly once: a proposal id is applied at one index only.
/// - Commit never goes backwards while a member runs, nor across a process
///   crash; after a power loss it may (an unsynced commit-only hard state is
///   lost), but never below a membership change the member had applied.
public struct Oracle {
    public private(set) var violations: [String] = []
    private var leaderOfTerm: [UInt64: NodeID] = [:]
    private var entryIdentity: [IndexTerm: (data: UInt64, previousTerm: UInt64?)] = [:]
    private var committedTerm: [UInt64: UInt64] = [:]
    public private(set) var maxCommitted: UInt64 = 0
    private var appliedHash: [UInt64: UInt64] = [:]
    private var proposalIndex: [UInt64: UInt64] = [:]
    private var lastCommit: [NodeID: UInt64] = [:]

    struct IndexTerm: Hashable { var index: UInt64; var term: UInt64 }

    public init() {}

    mutating func fail(_ message: String) { violations.append(message) }

    /// A member reported its soft state in a Ready.
    mutating func observeRole(_ node: SimNode, _ soft: SoftState) {
        guard soft.role == .leader, let raft = node.raft else { return }
        if let other = leaderOfTerm[raft.term], other != node.id {
            fail("election safety: n\(other) and n\(node.id) both leaders in term \(raft.term)")
        }
        leaderOfTerm[raft.term] = node.id
        // Leader completeness: the newest committed entry is in the new leader's log.
        let c = maxCommitted
        guard c > 0, let t = committedTerm[c] else { return }
        if c < raft.firstIndex - 1 { return }  // covered by its snapshot
        if raft.lastIndex < c || raft.term(at: c) != t {
            fail("leader completeness: n\(node.id) leads term \(raft.term) without committed entry \(c) (term \(t)); its term there: \(raft.term(at: c).map(String.init) ?? "none")")
        }
    }

    /// A member made `entries` durable.
    mutating func observePersisted(_ node: SimNode, _ entries: [Entry]) {
        for entry in entries {
            let previous: UInt64? = entry.index == 1 ? 0 : (try? node.disk.term(at: entry.index - 1))
            let key = IndexTerm(index: entry.index, term: entry.term)
            let digest = Self.digest(entry)
            if let known = entryIdentity[key] {
                if known.data != digest {
                    fail("log matching: two different entries at index \(entry.index) term \(entry.term) (n\(node.id))")
                }
                if let a = known.previousTerm, let b = previous, a != b {
                    fail("log matching: entry \(entry.index)/\(entry.term) follows term \(a) on one member and \(b) on n\(node.id)")
                }
                if known.previousTerm == nil, let previous { entryIdentity[key] = (known.data, previous) }
            } else {
                entryIdentity[key] = (digest, previous)
            }
        }
    }

    /// After each Ready: learn newly committed entries, check commit monotonicity.
    mutating func observeCommit(_ node: SimNode) {
        guard let raft = node.raft else { return }
        let commit = raft.commitIndex
        let last = lastCommit[node.id] ?? 0
        if commit < last {
            fail("commit index of n\(node.id) went back from \(last) to \(commit)")
            return
        }
        if commit == last { return }
        var index = max(last + 1, raft.firstIndex)
        while index <= commit {
            if let term = raft.term(at: index) {
                if let known = committedTerm[index], known != term {
                    fail("state machine safety: index \(index) committed with term \(known) and term \(term) (n\(node.id))")
                }
                committedTerm[index] = term
            }
            index += 1
        }
        maxCommitted = max(maxCommitted, commit)
        lastCommit[node.id] = commit
    }

    /// A member restarted from its disk.
    mutating func observeRestart(_ node: SimNode) {
        guard let raft = node.raft else { return }
        // A process crash loses nothing written: the commit index covers all
        // that was applied. A power loss may lose a commit-only hard state,
        // but not one that committed a membership change.
        if raft.commitIndex < node.mustKeepAfterCrash.commit {
            fail("n\(node.id) restarted with commit \(raft.commitIndex) below \(node.mustKeepAfterCrash.commit), "
                + node.mustKeepAfterCrash.why)
        }
        lastCommit[node.id] = raft.commitIndex
    }

    /// A member applied `entry`; its state machine hash is now `hash`.
    mutating func observeApplied(_ node: SimNode, _ entry: Entry, hash: UInt64) {
        if let known = appliedHash[entry.index], known != hash {
            fail("state machine safety: n\(node.id) applied a different history at index \(entry.index)")
        }
        appliedHash[entry.index] = hash
        if entry.kind == .normal, let id = Proposal.decode(entry.data) {
            if let index = proposalIndex[id], index != entry.index {
                fail("exactly once: proposal \(id) applied at index \(index) and \(entry.index)")
            }
            proposalIndex[id] = entry.index
        }
    }

    mutating func observeSnapshot(_ node: SimNode, _ snapshot: Snapshot) {
        guard let state = SimStateMachine(snapshotData: snapshot.data) else {
            fail("n\(node.id) received an unreadable snapshot")
            return
        }
        if let known = appliedHash[state.appliedIndex], known != state.hash {
            fail("state machine safety: snapshot at \(state.appliedIndex) installed on n\(node.id) disagrees with applied history")
        }
    }

    /// The hash every member reached at `index`, if any applied it.
    public func hash(at index: UInt64) -> UInt64? { appliedHash[index] }

    static func digest(_ entry: Entry) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ UInt64(entry.kind.rawValue)
        for byte in entry.data { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h ^ UInt64(entry.data.count)
    }
}
