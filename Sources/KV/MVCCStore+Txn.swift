// Transactions (etcd's Txn): compare, then apply one branch atomically under a
// single revision.

extension MVCCStore {
    /// etcd's limit on operations per txn, nested ones included (`--max-txn-ops`).
    public static let maxTxnOperations = 128

    public func txn(_ request: TxnRequest) throws(KVError) -> (TxnResponse, [Event]) {
        try Self.validate(request)
        // Every compare, nested ones included, is evaluated once against the state
        // before the txn (etcd's compareToPath); checking and applying both follow
        // this path, so the branch checked is the branch applied.
        var path: [Bool] = []
        choosePath(request, at: revision, into: &path)
        var cursor = 0
        try checkPuts(request, path, &cursor)
        cursor = 0
        try checkRanges(request, path, &cursor, at: revision)
        cursor = 0
        let before = operations.total
        let (response, events) = try write { (context: inout WriteContext) throws(KVError) in
            apply(request, path, &cursor, &context)
        }
        if operations.total - before > 1 { operations.txns += 1 }
        var top = response
        top.revision = revision
        return (top, events)
    }

    // MARK: Validation before proposing (etcd's v3rpc checks)

    /// The checks etcd makes before a txn is proposed (`checkTxnRequest`): at most
    /// ``maxTxnOperations`` operations, a nested txn counting its own against
    /// what its parent leaves (whatever its siblings use); no empty keys
    /// anywhere; the put options' rules; and no key written twice in a branch
    /// (`checkIntervals`).
    public static func validate(_ request: TxnRequest) throws(KVError) {
        try validate(request, budget: maxTxnOperations)
        _ = try checkIntervals(request.success)
        _ = try checkIntervals(request.failure)
    }

    private static func validate(_ request: TxnRequest, budget: Int) throws(KVError) {
        let ops = max(request.compare.count, request.success.count, request.failure.count)
        if ops > budget { throw .tooManyOperations }
        for compare in request.compare where compare.key.isEmpty { throw .emptyKey }
        for op in request.success + request.failure {
            switch op {
            case let .range(r): try validate(range: r)
            case let .put(p): try validate(put: p)
            case let .deleteRange(d): try validate(delete: d)
            case let .txn(inner): try validate(inner, budget: budget - ops)
            }
        }
    }

    /// etcd's `checkRangeRequest`.
    public static func validate(range request: RangeRequest) throws(KVError) {
        if request.key.isEmpty { throw .emptyKey }
    }

    /// etcd's `checkPutRequest`.
    public static func validate(put request: PutRequest) throws(KVError) {
        try validatePut(
            keyIsEmpty: request.key.isEmpty, valueIsEmpty: request.value.isEmpty,
            ignoreValue: request.ignoreValue, ignoreLease: request.ignoreLease, lease: request.lease)
    }

    /// ``validate(put:)`` on a put's fields (the API layer checks a request
    /// before converting it).
    public static func validatePut(
        keyIsEmpty: Bool, valueIsEmpty: Bool, ignoreValue: Bool, ignoreLease: Bool, lease: LeaseID
    ) throws(KVError) {
        if keyIsEmpty { throw .emptyKey }
        if ignoreValue && !valueIsEmpty { throw .valueProvided }
        if ignoreLease && lease != 0 { throw .leaseProvided }
    }

    /// etcd's `checkDeleteRequest`.
    public static func validate(delete request: DeleteRangeRequest) throws(KVError) {
        if request.key.isEmpty { throw .emptyKey }
    }

    /// etcd's `checkIntervals`: the keys a branch puts, and the ranges it deletes,
    /// nested txns included; a key put twice, or put and deleted, is an error.
    /// The two branches of a nested txn exclude each other, so they may both put
    /// the same key. A delete to `[0]` ("from key") is an interval etcd's ordering
    /// treats as empty, so it conflicts with nothing.
    private static func checkIntervals(_ ops: [RequestOp]) throws(KVError) -> (puts: Set<[UInt8]>, deletes: [KeyRange]) {
        var deletes: [KeyRange] = []
        for case let .deleteRange(d) in ops where d.rangeEnd != [0] {
            deletes.append(KeyRange(key: d.key, rangeEnd: d.rangeEnd))
        }
        func deleted(_ key: [UInt8]) -> Bool { deletes.contains { $0.contains(key) } }
        var puts = Set<[UInt8]>()
        for case let .txn(inner) in ops {
            let then = try checkIntervals(inner.success)
            let otherwise = try checkIntervals(inner.failure)
            for key in then.puts {
                if puts.contains(key) || deleted(key) { throw .duplicateKeyInTxn }
                puts.insert(key)
            }
            for key in otherwise.puts {
                if puts.contains(key) && !then.puts.contains(key) { throw .duplicateKeyInTxn }
                if deleted(key) { throw .duplicateKeyInTxn }
                puts.insert(key)
            }
            deletes += then.deletes + otherwise.deletes
        }
        for case let .put(p) in ops {
            if puts.contains(p.key) || deleted(p.key) { throw .duplicateKeyInTxn }
            puts.insert(p.key)
        }
        return (puts, deletes)
    }

    // MARK: The path, checks and application

    /// Appends the outcome of `request`'s compares, then of every nested txn in
    /// the chosen branch, depth first (etcd's `compareToPath`).
    private func choosePath(_ request: TxnRequest, at main: Int64, into path: inout [Bool]) {
        let succeeded = request.compare.allSatisfy { evaluate($0, at: main) }
        path.append(succeeded)
        for case let .txn(inner) in succeeded ? request.success : request.failure {
            choosePath(inner, at: main, into: &path)
        }
    }

    /// etcd checks every put on the path first (`checkRequestPut`)...
    private func checkPuts(_ request: TxnRequest, _ path: [Bool], _ cursor: inout Int) throws(KVError) {
        let succeeded = path[cursor]
        cursor += 1
        for op in succeeded ? request.success : request.failure {
            switch op {
            case let .put(p): try checkPut(p, keyFirst: true)
            case let .txn(inner): try checkPuts(inner, path, &cursor)
            default: break
            }
        }
    }

    /// ...then every range's revision (`checkRequestRange`), so a txn either
    /// applies whole or fails with no effect.
    private func checkRanges(_ request: TxnRequest, _ path: [Bool], _ cursor: inout Int, at current: Int64) throws(KVError) {
        let succeeded = path[cursor]
        cursor += 1
        for op in succeeded ? request.success : request.failure {
            switch op {
            case let .range(r):
                if r.revision == 0 { continue }
                if r.revision > current { throw .futureRevision }
                if r.revision < compactedRevision { throw .compacted }
            case let .txn(inner):
                try checkRanges(inner, path, &cursor, at: current)
            default:
                break
            }
        }
    }

    /// Applies the path. Cannot fail: everything that could was checked first.
    /// Each response reports the revision as etcd's headers do: a read sees the
    /// revision before the txn, or the txn's own once it has written; a write
    /// reports the txn's revision; a delete that deleted nothing before any write
    /// reports the revision before; a nested txn's own header stays 0.
    private func apply(_ request: TxnRequest, _ path: [Bool], _ cursor: inout Int, _ context: inout WriteContext) -> TxnResponse {
        let succeeded = path[cursor]
        cursor += 1
        var responses: [ResponseOp] = []
        for op in succeeded ? request.success : request.failure {
            switch op {
            case let .range(r):
                var response: RangeResponse
                do {
                    response = try range(r, at: context.readRevision)
                } catch {
                    assertionFailure("range failed after its checks passed: \(error)")
                    response = RangeResponse()
                }
                response.revision = context.readRevision
                responses.append(.range(response))
            case let .put(p):
                let previous = applyPut(p, &context)
                responses.append(.put(PutResponse(previous: p.prevKV ? previous : nil, revision: context.main)))
            case let .deleteRange(d):
                let deleted = applyDelete(d, &context)
                responses.append(.deleteRange(DeleteRangeResponse(
                    deleted: Int64(deleted.count), previous: d.prevKV ? deleted : [], revision: context.readRevision)))
            case let .txn(inner):
                var nested = apply(inner, path, &cursor, &context)
                nested.revision = 0
                responses.append(.txn(nested))
            }
        }
        return TxnResponse(succeeded: succeeded, responses: responses, revision: 0)
    }

    /// etcd's `applyCompare`: every key in the range must satisfy the comparison;
    /// a missing key compares as zeroes, except that a value comparison on a
    /// missing key always fails.
    func evaluate(_ compare: Compare, at main: Int64) -> Bool {
        var kvs: [KeyValue] = []
        visit(KeyRange(key: compare.key, rangeEnd: compare.rangeEnd)) { key, history in
            if let kv = history.visible(at: main, key: key) { kvs.append(kv) }
            return true
        }
        if kvs.isEmpty {
            if case .value = compare.target { return false }
            return Self.compare(compare, KeyValue(key: compare.key, createRevision: 0, modRevision: 0, version: 0, value: [], lease: 0))
        }
        return kvs.allSatisfy { Self.compare(compare, $0) }
    }

    static func compare(_ compare: Compare, _ kv: KeyValue) -> Bool {
        let order: Int
        switch compare.target {
        case let .version(v): order = kv.version == v ? 0 : (kv.version < v ? -1 : 1)
        case let .createRevision(v): order = kv.createRevision == v ? 0 : (kv.createRevision < v ? -1 : 1)
        case let .modRevision(v): order = kv.modRevision == v ? 0 : (kv.modRevision < v ? -1 : 1)
        case let .lease(v): order = kv.lease == v ? 0 : (kv.lease < v ? -1 : 1)
        case let .value(v): order = ByteKeyTree<Int>.compare(kv.value, v).signum()
        case .unknown: order = 0
        }
        switch compare.result {
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .greater: return order > 0
        case .less: return order < 0
        case .unknown: return true
        }
    }
}
