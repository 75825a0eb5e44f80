/// One member of the cluster as every member replicates it (etcd's `Member`).
public struct Member: Sendable, Hashable {
    public var id: UInt64
    /// Empty until the member has started and published itself.
    public var name: String
    public var peerURLs: [String]
    /// Empty until the member has started and published itself.
    public var clientURLs: [String]
    public var isLearner: Bool

    public init(id: UInt64, name: String = "", peerURLs: [String], clientURLs: [String] = [], isLearner: Bool = false) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }
}

/// The replicated member directory: who is in the cluster and where to reach
/// them, changed in log order by membership changes (Raft configuration
/// changes carrying the member's record) and by members publishing their own
/// attributes. Removed ids are remembered and never come back (etcd's
/// ErrIDRemoved, which its API answers as "member not found").
public struct MemberTable: Sendable, Equatable {
    /// Set by the bootstrap entries; 0 until then.
    public internal(set) var clusterID: UInt64 = 0
    public internal(set) var members: [UInt64: Member] = [:]
    public internal(set) var removed: Set<UInt64> = []

    public init() {}

    /// Members in id order.
    public var sorted: [Member] { members.values.sorted { $0.id < $1.id } }

    /// The member using any of `urls` as a peer URL, other than `except`.
    public func member(usingPeerURLs urls: [String], except: UInt64 = 0) -> Member? {
        members.values.first { $0.id != except && !Set($0.peerURLs).isDisjoint(with: urls) }
    }

    /// A voter or learner was added (or a learner promoted: `record` nil).
    mutating func added(_ id: UInt64, record: Member?, learner: Bool) {
        if var existing = members[id] {
            existing.isLearner = learner
            if let record, !record.peerURLs.isEmpty { existing.peerURLs = record.peerURLs }
            members[id] = existing
        } else {
            var member = record ?? Member(id: id, peerURLs: [])
            member.id = id
            member.isLearner = learner
            members[id] = member
        }
    }

    mutating func removedMember(_ id: UInt64) {
        members[id] = nil
        removed.insert(id)
    }
}

/// A membership change as it applies to the directory.
public struct MemberChange: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        /// Adds a voter, or promotes a learner.
        case addVoter
        case addLearner
        case remove
    }

    public var kind: Kind
    public var id: UInt64
    /// The member's record from the change's context (nil for a promotion or removal).
    public var record: Member?
    /// Set in bootstrap entries: the cluster's id.
    public var clusterID: UInt64

    public init(kind: Kind, id: UInt64, record: Member? = nil, clusterID: UInt64 = 0) {
        self.kind = kind
        self.id = id
        self.record = record
        self.clusterID = clusterID
    }
}

/// Errors of the Cluster API, with etcd's messages and codes.
public enum MemberError: Error, Sendable, Hashable, CustomStringConvertible {
    case notFound
    case idRemoved
    case idExists
    case peerURLExists
    case notLearner
    case learnerNotReady
    case tooManyLearners
    case badURLs
    /// A strict reconfiguration check failed (etcd's ErrNotEnoughStartedMembers).
    case notEnoughStartedMembers
    /// Removing the voter would leave the reachable voters under quorum.
    case unhealthy

    public var description: String {
        switch self {
        case .notFound: "etcdserver: member not found"
        case .idRemoved: "etcdserver: ID removed"
        case .idExists: "etcdserver: member ID already exist"
        case .peerURLExists: "etcdserver: Peer URLs already exists"
        case .notLearner: "etcdserver: can only promote a learner member"
        case .learnerNotReady: "etcdserver: can only promote a learner member which is in sync with leader"
        case .tooManyLearners: "etcdserver: too many learner members in cluster"
        case .badURLs: "etcdserver: given member URLs are invalid"
        case .notEnoughStartedMembers: "etcdserver: re-configuration failed due to not enough started members"
        case .unhealthy: "etcdserver: unhealthy cluster"
        }
    }

    /// gRPC codes as etcd's rpctypes: NotFound, InvalidArgument, Unavailable,
    /// FailedPrecondition.
    public var grpcCode: Int {
        switch self {
        case .notFound: 5
        case .badURLs: 3
        case .unhealthy: 14
        default: 9
        }
    }
}

extension KVStateMachine {
    /// Applies a membership change Raft accepted.
    func applyMember(_ change: MemberChange) -> [Member] {
        if change.clusterID != 0 && members.clusterID == 0 { members.clusterID = change.clusterID }
        switch change.kind {
        case .addVoter: members.added(change.id, record: change.record, learner: false)
        case .addLearner: members.added(change.id, record: change.record, learner: true)
        case .remove: members.removedMember(change.id)
        }
        return members.sorted
    }

    func applyAttributes(id: UInt64, name: String, clientURLs: [String]) throws(MemberError) -> [Member] {
        guard members.members[id] != nil else { throw .notFound }
        members.members[id]?.name = name
        members.members[id]?.clientURLs = clientURLs
        return members.sorted
    }

    func applyPeerURLs(id: UInt64, peerURLs: [String]) throws(MemberError) -> [Member] {
        guard members.members[id] != nil else { throw .notFound }
        if members.member(usingPeerURLs: peerURLs, except: id) != nil { throw .peerURLExists }
        members.members[id]?.peerURLs = peerURLs
        return members.sorted
    }
}
