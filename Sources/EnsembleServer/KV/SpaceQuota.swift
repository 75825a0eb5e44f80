import Synchronization

/// The space quota (etcd's `--quota-backend-bytes`), shared by a member's
/// replica, which publishes what the store holds after every apply, and its
/// API services, which check it before proposing writes that add data.
/// Over the quota, the member raises the replicated NOSPACE alarm and such
/// writes fail with "etcdserver: mvcc: database space exceeded" until an
/// operator frees space (delete, compact) and disarms the alarm.
public final class SpaceQuota: Sendable {
    /// Bytes the store may hold (etcd's default is 2 GiB); 0 means no quota.
    public let limit: Int
    private let used = Atomic<Int>(0)
    private let alarmed = Atomic<Bool>(false)

    public init(limit: Int = 2 << 30) {
        self.limit = limit
    }

    /// What the store holds now (``KV/MVCCStore/approximateBytes``).
    public var usedBytes: Int { used.load(ordering: .relaxed) }
    /// Whether the NOSPACE alarm is raised in the applied state.
    public var isAlarmed: Bool { alarmed.load(ordering: .relaxed) }

    func publish(used bytes: Int, alarmed raised: Bool) {
        used.store(bytes, ordering: .relaxed)
        alarmed.store(raised, ordering: .relaxed)
    }

    /// Whether a request adding about `bytes` fits (etcd's quota check is the
    /// same estimate: current size plus the request's).
    public func allows(adding bytes: Int) -> Bool {
        limit == 0 || usedBytes + bytes <= limit
    }
}
