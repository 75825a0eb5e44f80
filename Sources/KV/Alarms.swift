/// A raised alarm, replicated so every member refuses the same requests
/// (etcd's `AlarmMember`). NOSPACE is raised when the space quota is exceeded:
/// writes that add data are refused until an operator frees space and
/// disarms it.
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
