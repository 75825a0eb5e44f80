/// etcd's periodic corruption check (`--experimental-corrupt-check-time`),
/// as a pure decision: the leader hashes its history, asks every other
/// member for the hash of theirs at its revision (HashKV), hashes its own
/// again, and raises CORRUPT for the first member the answers convict
/// (etcd 3.4's `checkHashKV`). CORRUPT then refuses every write in the
/// cluster until an operator disarms it.
///
/// Members that have not applied the leader's revision yet, or that
/// compacted differently, cannot be compared and are passed over; so is a
/// member that does not answer.
public enum CorruptionCheck {
    /// One member's HashKV answer: its history's hash at the revision asked
    /// for, its current revision, and its compaction revision.
    public struct Report: Sendable, Equatable {
        public var member: UInt64
        public var hash: UInt32
        public var revision: Int64
        public var compactRevision: Int64

        public init(member: UInt64, hash: UInt32, revision: Int64, compactRevision: Int64) {
            self.member = member
            self.hash = hash
            self.revision = revision
            self.compactRevision = compactRevision
        }
    }

    /// What convicted a member, for the log.
    public struct Finding: Sendable, Equatable {
        public var member: UInt64
        public var reason: String
    }

    /// etcd's initial check (`CheckInitialHashKV`), made by a member before
    /// it serves: `own` is its history's report, `peers` the others' hashes
    /// at its revision. Each peer with the same compaction revision and
    /// another hash is a finding (about this member's data, named by
    /// `own.member`); peers compacted differently cannot be compared.
    public static func initialVerdict(own: Report, peers: [Report]) -> [Finding] {
        peers.filter { $0.compactRevision == own.compactRevision && $0.hash != own.hash }.map { peer in
            Finding(
                member: own.member,
                reason: "its hash \(own.hash) differs from member \(String(peer.member, radix: 16))'s \(peer.hash) "
                    + "at revision \(own.revision), compaction revision \(own.compactRevision)")
        }
    }

    /// The member to raise CORRUPT for, if any. `before` and `after`: the
    /// leader's own reports taken before and after asking `peers` (at
    /// `before.revision`).
    public static func verdict(leader before: Report, after: Report, peers: [Report]) -> Finding? {
        // The same history hashed twice differently: the leader's own data
        // changes under it.
        if after.hash != before.hash && after.revision == before.revision && after.compactRevision == before.compactRevision {
            return Finding(member: before.member, reason: "its own hash changed from \(before.hash) to \(after.hash) at revision \(before.revision)")
        }
        for peer in peers {
            // Followers apply what the leader committed: never more.
            if peer.revision > after.revision {
                return Finding(member: peer.member, reason: "its revision \(peer.revision) is ahead of the leader's \(after.revision)")
            }
            if peer.compactRevision > after.compactRevision {
                return Finding(
                    member: peer.member,
                    reason: "its compaction revision \(peer.compactRevision) is ahead of the leader's \(after.compactRevision)")
            }
            if peer.compactRevision == before.compactRevision && peer.hash != before.hash {
                return Finding(
                    member: peer.member,
                    reason: "its hash \(peer.hash) differs from the leader's \(before.hash) at revision \(before.revision), "
                        + "compaction revision \(before.compactRevision)")
            }
        }
        return nil
    }
}
