/// A raised alarm, replicated so every member refuses the same requests
/// (etcd's `AlarmMember`). NOSPACE is raised when the space quota is exceeded:
/// writes that add data are refused until an operator frees space and
/// disarms it. CORRUPT (raised through the Alarm API) refuses every write,
/// compaction, lease grant and revocation until disarmed; reads go on.
public struct Alarm: Sendable, Hashable, Comparable {
    public enum Kind: Int32, Sendable, Hashable {
        case noSpace = 1
        case corrupt = 2
    }

    /// The member that raised it.
    public var member: UInt64
    public var kind: Kind

    public init(member: UInt64, kind: Kind) {
        self.member = member
        self.kind = kind
    }

    public static func < (a: Alarm, b: Alarm) -> Bool {
        (a.member, a.kind.rawValue) < (b.member, b.kind.rawValue)
    }
}

extension KVStateMachine {
    /// Whether CORRUPT refuses `command` (etcd's applierV3Corrupt): whatever
    /// changes the keyspace or the leases.
    func refusedForCorruption(_ command: Command) -> Bool {
        guard alarms.contains(where: { $0.kind == .corrupt }) else { return false }
        switch command {
        case .put, .deleteRange, .compact, .leaseGrant, .leaseRevoke: return true
        // etcd serves a txn of ranges only outside the log, so the alarm never sees it.
        case let .txn(request): return !request.isRangesOnly
        case .leaseCheckpoint, .alarm, .member, .memberAttributes, .memberPeerURLs: return false
        }
    }

    /// Whether NOSPACE refuses `command` (etcd's capped applier): puts, txns
    /// that may put, and lease grants. Deletes, compaction and revocations
    /// still go through — they are how space is freed.
    func refusedForSpace(_ command: Command) -> Bool {
        guard alarms.contains(where: { $0.kind == .noSpace }) else { return false }
        switch command {
        case .put, .leaseGrant: return true
        case let .txn(request): return request.mayPut
        default: return false
        }
    }
}

extension TxnRequest {
    /// Whether every operation is a range (etcd's isTxnReadonly: a nested
    /// txn does not count as one).
    public var isRangesOnly: Bool {
        (success + failure).allSatisfy { if case .range = $0 { true } else { false } }
    }

    /// Whether either branch, or a nested txn, contains a put.
    public var mayPut: Bool {
        (success + failure).contains { op in
            switch op {
            case .put: true
            case let .txn(nested): nested.mayPut
            case .range, .deleteRange: false
            }
        }
    }
}
