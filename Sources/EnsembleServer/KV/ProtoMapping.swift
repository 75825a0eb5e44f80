import EnsembleAPI
import Foundation
import KV

// Conversions between etcd's wire messages (EnsembleAPI) and the KV state
// machine's requests and responses. Byte fields are `Data` on the wire and
// `[UInt8]` in KV.

extension Data {
    /// The bytes as an array, copied in one move: `[UInt8](data)` goes through
    /// the generic collection copy, about twice as slow (every put's key and
    /// value are converted when validated and again when applied).
    var byteArray: [UInt8] {
        withUnsafeBytes { Array($0.bindMemory(to: UInt8.self)) }
    }
}

extension RangeRequest {
    public init(_ p: Etcdserverpb_RangeRequest) {
        self.init(key: p.key.byteArray, rangeEnd: p.rangeEnd.byteArray)
        limit = p.limit
        revision = p.revision
        sortOrder = switch p.sortOrder {
        case .ascend: .ascend
        case .descend: .descend
        default: .none
        }
        sortTarget = switch p.sortTarget {
        case .version: .version
        case .create: .create
        case .mod: .mod
        case .value: .value
        default: .key
        }
        serializable = p.serializable
        keysOnly = p.keysOnly
        countOnly = p.countOnly
        minModRevision = p.minModRevision
        maxModRevision = p.maxModRevision
        minCreateRevision = p.minCreateRevision
        maxCreateRevision = p.maxCreateRevision
    }
}

extension PutRequest {
    public init(_ p: Etcdserverpb_PutRequest) {
        self.init(key: p.key.byteArray, value: p.value.byteArray, lease: p.lease)
        prevKV = p.prevKv
        ignoreValue = p.ignoreValue
        ignoreLease = p.ignoreLease
    }
}

extension DeleteRangeRequest {
    public init(_ p: Etcdserverpb_DeleteRangeRequest) {
        self.init(key: p.key.byteArray, rangeEnd: p.rangeEnd.byteArray)
        prevKV = p.prevKv
    }
}

extension Compare {
    /// Values this version of the API does not know are kept as `unknown`
    /// and evaluated as etcd evaluates them, not refused.
    public init(_ p: Etcdserverpb_Compare) {
        let target: Target
        // etcd reads the union member the target names; an unset member is zero.
        switch p.target {
        case .version: target = .version(p.version)
        case .create: target = .createRevision(p.createRevision)
        case .mod: target = .modRevision(p.modRevision)
        case .value: target = .value(p.value.byteArray)
        case .lease: target = .lease(p.lease)
        case .UNRECOGNIZED: target = .unknown
        }
        let result: Result
        switch p.result {
        case .equal: result = .equal
        case .greater: result = .greater
        case .less: result = .less
        case .notEqual: result = .notEqual
        case .UNRECOGNIZED: result = .unknown
        }
        self.init(key: p.key.byteArray, rangeEnd: p.rangeEnd.byteArray, target, result)
    }
}

extension TxnRequest {
    /// Throws etcd's errors for malformed operations: an empty RequestOp is
    /// `key not found` (etcd's checkRequestOp).
    public init(_ p: Etcdserverpb_TxnRequest) throws(KVError) {
        self.init(compare: p.compare.map(Compare.init), success: try Self.ops(p.success), failure: try Self.ops(p.failure))
    }

    private static func ops(_ ops: [Etcdserverpb_RequestOp]) throws(KVError) -> [RequestOp] {
        var result: [RequestOp] = []
        result.reserveCapacity(ops.count)
        for op in ops {
            switch op.request {
            case let .requestRange(r)?: result.append(.range(RangeRequest(r)))
            case let .requestPut(r)?: result.append(.put(PutRequest(r)))
            case let .requestDeleteRange(r)?: result.append(.deleteRange(DeleteRangeRequest(r)))
            case let .requestTxn(r)?: result.append(.txn(try TxnRequest(r)))
            case nil: throw .keyNotFound
            }
        }
        return result
    }
}

extension Mvccpb_KeyValue {
    public init(_ kv: KeyValue) {
        self.init()
        key = Data(kv.key)
        createRevision = kv.createRevision
        modRevision = kv.modRevision
        version = kv.version
        value = Data(kv.value)
        lease = kv.lease
    }
}

extension Mvccpb_Event {
    public init(_ event: Event) {
        self.init()
        type = event.kind == .put ? .put : .delete
        kv = Mvccpb_KeyValue(event.kv)
        if let previous = event.previous { prevKv = Mvccpb_KeyValue(previous) }
    }
}

/// Fills the response header every etcd response carries.
public struct HeaderSource: Sendable {
    public var clusterID: UInt64
    public var memberID: UInt64
    public var raftTerm: UInt64

    public init(clusterID: UInt64, memberID: UInt64, raftTerm: UInt64) {
        self.clusterID = clusterID
        self.memberID = memberID
        self.raftTerm = raftTerm
    }

    public func header(revision: Int64) -> Etcdserverpb_ResponseHeader {
        var header = Etcdserverpb_ResponseHeader()
        header.clusterID = clusterID
        header.memberID = memberID
        header.revision = revision
        header.raftTerm = raftTerm
        return header
    }
}

extension Etcdserverpb_RangeResponse {
    public init(_ r: RangeResponse, _ headers: HeaderSource) {
        self.init()
        header = headers.header(revision: r.revision)
        kvs = r.kvs.map(Mvccpb_KeyValue.init)
        more = r.more
        count = r.count
    }
}

extension Etcdserverpb_PutResponse {
    public init(_ r: PutResponse, _ headers: HeaderSource) {
        self.init()
        header = headers.header(revision: r.revision)
        if let previous = r.previous { prevKv = Mvccpb_KeyValue(previous) }
    }
}

extension Etcdserverpb_DeleteRangeResponse {
    public init(_ r: DeleteRangeResponse, _ headers: HeaderSource) {
        self.init()
        header = headers.header(revision: r.revision)
        deleted = r.deleted
        prevKvs = r.previous.map(Mvccpb_KeyValue.init)
    }
}

extension Etcdserverpb_TxnResponse {
    public init(_ r: TxnResponse, _ headers: HeaderSource) {
        self.init()
        // A nested txn's own header carries revision 0, as etcd's does.
        header = headers.header(revision: r.revision)
        succeeded = r.succeeded
        // Responses inside a txn carry only their revision in the header, as
        // etcd's applier leaves them (the server fills the outer header only).
        let headers = HeaderSource(clusterID: 0, memberID: 0, raftTerm: 0)
        responses = r.responses.map { op in
            var out = Etcdserverpb_ResponseOp()
            switch op {
            case let .range(x): out.responseRange = Etcdserverpb_RangeResponse(x, headers)
            case let .put(x): out.responsePut = Etcdserverpb_PutResponse(x, headers)
            case let .deleteRange(x): out.responseDeleteRange = Etcdserverpb_DeleteRangeResponse(x, headers)
            case let .txn(x): out.responseTxn = Etcdserverpb_TxnResponse(x, headers)
            }
            return out
        }
    }
}
