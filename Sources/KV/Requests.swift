// The store's requests and responses, shaped like etcd's `etcdserverpb` messages
// (without the protobuf dependency; the API layer maps one to the other).

public struct RangeRequest: Sendable, Hashable {
    public enum SortOrder: Sendable, Hashable { case none, ascend, descend }
    public enum SortTarget: Sendable, Hashable { case key, version, create, mod, value }

    public var key: [UInt8]
    /// Empty: just `key`. `[0]`: every key `>= key`. Otherwise `[key, rangeEnd)`.
    public var rangeEnd: [UInt8] = []
    /// At most this many keys (0: no limit); `more` tells whether there were more.
    public var limit: Int64 = 0
    /// Read as of this revision (0 or less: the current one).
    public var revision: Int64 = 0
    public var sortOrder: SortOrder = .none
    public var sortTarget: SortTarget = .key
    public var serializable = false
    public var keysOnly = false
    public var countOnly = false
    public var minModRevision: Int64 = 0
    public var maxModRevision: Int64 = 0
    public var minCreateRevision: Int64 = 0
    public var maxCreateRevision: Int64 = 0

    public init(key: [UInt8], rangeEnd: [UInt8] = []) {
        self.key = key
        self.rangeEnd = rangeEnd
    }
}

public struct RangeResponse: Sendable, Hashable {
    public var kvs: [KeyValue] = []
    public var more = false
    /// Keys in the range at the revision read, before limit and filters.
    public var count: Int64 = 0
    /// The store revision the read saw (the response header's revision).
    public var revision: Int64 = 0
}

public struct PutRequest: Sendable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]
    public var lease: LeaseID = 0
    public var prevKV = false
    /// Keep the current value (the key must exist).
    public var ignoreValue = false
    /// Keep the current lease (the key must exist).
    public var ignoreLease = false

    public init(key: [UInt8], value: [UInt8], lease: LeaseID = 0) {
        self.key = key
        self.value = value
        self.lease = lease
    }
}

public struct PutResponse: Sendable, Hashable {
    public var previous: KeyValue?
    public var revision: Int64 = 0

    public init(previous: KeyValue? = nil, revision: Int64 = 0) {
        self.previous = previous
        self.revision = revision
    }
}

public struct DeleteRangeRequest: Sendable, Hashable {
    public var key: [UInt8]
    public var rangeEnd: [UInt8] = []
    public var prevKV = false

    public init(key: [UInt8], rangeEnd: [UInt8] = []) {
        self.key = key
        self.rangeEnd = rangeEnd
    }
}

public struct DeleteRangeResponse: Sendable, Hashable {
    public var deleted: Int64 = 0
    public var previous: [KeyValue] = []
    public var revision: Int64 = 0
}

/// A txn guard: compares each key in the range against a value.
///
/// `unknown` stands for an enum value from a newer API that this version
/// cannot name; it is evaluated as etcd evaluates one: an unknown target
/// compares equal, an unknown result holds.
public struct Compare: Sendable, Hashable {
    public enum Target: Sendable, Hashable {
        case version(Int64)
        case createRevision(Int64)
        case modRevision(Int64)
        case value([UInt8])
        case lease(LeaseID)
        case unknown
    }

    public enum Result: Sendable, Hashable { case equal, greater, less, notEqual, unknown }

    public var key: [UInt8]
    public var rangeEnd: [UInt8] = []
    public var target: Target
    public var result: Result

    public init(key: [UInt8], rangeEnd: [UInt8] = [], _ target: Target, _ result: Result) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.target = target
        self.result = result
    }
}

public indirect enum RequestOp: Sendable, Hashable {
    case range(RangeRequest)
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
}

public indirect enum ResponseOp: Sendable, Hashable {
    case range(RangeResponse)
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
}

public struct TxnRequest: Sendable, Hashable {
    public var compare: [Compare]
    public var success: [RequestOp]
    public var failure: [RequestOp]

    public init(compare: [Compare] = [], success: [RequestOp] = [], failure: [RequestOp] = []) {
        self.compare = compare
        self.success = success
        self.failure = failure
    }
}

public struct TxnResponse: Sendable, Hashable {
    public var succeeded = false
    public var responses: [ResponseOp] = []
    public var revision: Int64 = 0
}
