/// One lease as every member replicates it.
public struct Lease: Sendable, Hashable {
    public var id: LeaseID
    /// TTL in seconds as granted (after clamping to the minimum).
    public var grantedTTL: Int64
    /// Remaining TTL in seconds recorded by the leader's last checkpoint, or 0.
    /// A new leader restarts the countdown from here instead of from the full
    /// TTL (etcd without checkpoints resets it on every leader change).
    public var checkpointTTL: Int64
    /// Keys attached to the lease, deleted with it.
    public var keys: Set<[UInt8]>
}

/// Errors of the lease API, with etcd's messages.
public enum LeaseError: Error, Sendable, Hashable, CustomStringConvertible {
    case notFound
    case alreadyExists
    case ttlTooLarge

    public var description: String {
        switch self {
        case .notFound: "etcdserver: requested lease not found"
        case .alreadyExists: "etcdserver: lease already exists"
        case .ttlTooLarge: "etcdserver: too large lease TTL"
        }
    }

    /// gRPC status codes as etcd's `rpctypes`: NotFound, FailedPrecondition, OutOfRange.
    public var grpcCode: Int {
        switch self {
        case .notFound: 5
        case .alreadyExists: 9
        case .ttlTooLarge: 11
        }
    }
}

/// The replicated lease state: which leases exist, their TTLs and their keys.
/// Deterministic: time never enters it. When a lease expires is decided by the
/// leader's ``Lessor``, which proposes the revocation through the log.
public struct LeaseTable: Sendable {
    /// etcd's maximum lease TTL (`MaxLeaseTTL`).
    public static let maxTTL: Int64 = 9_000_000_000
    /// etcd's minimum TTL at its default election timeout (1.5 × 1 s, rounded up).
    public static let defaultMinimumTTL: Int64 = 2
    /// Shortest TTL granted; shorter grants in the log are raised to it. The
    /// same on every member, so applying a grant gives the same lease
    /// everywhere; a member whose election timeout asks for more raises the
    /// TTL before proposing (`LeaseService.minimumTTL`).
    public var minimumTTL: Int64 = Self.defaultMinimumTTL

    public private(set) var leases: [LeaseID: Lease] = [:]
    /// Which lease each key is attached to.
    public private(set) var leaseOfKey: [[UInt8]: LeaseID] = [:]

    public init() {}

    /// Grants a lease. The id is chosen by the proposer (nonzero), so every
    /// member grants the same one.
    public mutating func grant(id: LeaseID, ttl: Int64) throws(LeaseError) -> Lease {
        guard id != 0 else { throw .notFound }
        if ttl > Self.maxTTL { throw .ttlTooLarge }
        if leases[id] != nil { throw .alreadyExists }
        let lease = Lease(id: id, grantedTTL: max(ttl, minimumTTL), checkpointTTL: 0, keys: [])
        leases[id] = lease
        return lease
    }

    /// Forgets the lease and returns the keys the caller must delete with it.
    public mutating func revoke(id: LeaseID) throws(LeaseError) -> [[UInt8]] {
        guard let lease = leases.removeValue(forKey: id) else { throw .notFound }
        for key in lease.keys { leaseOfKey[key] = nil }
        return lease.keys.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// Records the leader's view of the remaining TTL (lease checkpointing).
    public mutating func checkpoint(id: LeaseID, remainingTTL: Int64) {
        guard let granted = leases[id]?.grantedTTL else { return }
        // Clamped: a remaining TTL past the granted one is not a countdown.
        leases[id]?.checkpointTTL = min(max(remainingTTL, 0), granted)
    }

    /// A key was put with `lease` (0: none), replacing any earlier attachment.
    mutating func attach(_ key: [UInt8], to lease: LeaseID) {
        if let old = leaseOfKey[key], old != lease {
            leases[old]?.keys.remove(key)
            leaseOfKey[key] = nil
        }
        guard lease != 0, leases[lease] != nil else { return }
        leases[lease]?.keys.insert(key)
        leaseOfKey[key] = lease
    }

    /// A key was deleted.
    mutating func detach(_ key: [UInt8]) {
        guard let old = leaseOfKey.removeValue(forKey: key) else { return }
        leases[old]?.keys.remove(key)
    }

    public func contains(_ id: LeaseID) -> Bool { leases[id] != nil }

    /// Lease ids in ascending order.
    public var ids: [LeaseID] { leases.keys.sorted() }
}
