/// A lease's id; 0 means "no lease" (etcd's convention).
public typealias LeaseID = Int64

/// A key's state at one revision, as etcd's `mvccpb.KeyValue`.
public struct KeyValue: Sendable, Hashable {
    public var key: [UInt8]
    /// Revision of the put that created the key (in its current generation).
    public var createRevision: Int64
    /// Revision of the last change to the key.
    public var modRevision: Int64
    /// Number of puts since the key was created; a delete resets it to 0.
    public var version: Int64
    public var value: [UInt8]
    public var lease: LeaseID

    public init(key: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, value: [UInt8], lease: LeaseID) {
        self.key = key
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.value = value
        self.lease = lease
    }
}

/// One change, as etcd's `mvccpb.Event`: what watchers receive.
public struct Event: Sendable, Hashable {
    public enum Kind: Sendable, Hashable { case put, delete }
    public var kind: Kind
    /// For a put, the new state; for a delete, the key with the deletion's
    /// `modRevision` (other fields zero), as etcd reports it.
    public var kv: KeyValue
    /// The key's state before the change, if it existed.
    public var previous: KeyValue?

    public init(kind: Kind, kv: KeyValue, previous: KeyValue?) {
        self.kind = kind
        self.kv = kv
        self.previous = previous
    }
}

/// A revision: `main` is the store revision of a write transaction, `sub` orders
/// the changes inside it (etcd's `mvcc.revision`).
public struct Revision: Sendable, Hashable, Comparable {
    public var main: Int64
    public var sub: Int64

    public init(main: Int64, sub: Int64) {
        self.main = main
        self.sub = sub
    }

    public static func < (a: Revision, b: Revision) -> Bool {
        a.main != b.main ? a.main < b.main : a.sub < b.sub
    }
}
