// Transactions (etcd's Txn): compare, then apply one branch atomically under a
// single revision.

extension MVCCStore {
    /// etcd's limit on operations per branch (`--max-txn-ops`).
    public static let maxTxnOperations = 128

    public func txn(_ request: TxnRequest) throws(KVError) -> (TxnResponse, [Event]) {
        try Self.validate(request)
        let succeeded = request.compare.allSatisfy { evaluate($0, at: revision) }
        let branch = succeeded ? request.success : request.failure
        try check(branch, at: revision)
        let (responses, events) = try write { (context: inout WriteContext) throws(KVError) in
            try apply(branch, &context)
        }
        var response = TxnResponse(succeeded: succeeded, responses: responses, revision: revision)
        response.fillRevisions(revision)
        return (response, events)
    }

    /// Checks done before a txn is proposed (etcd's `checkTxnRequest`): operation
    /// counts, and no key written twice (a put inside another put's key or a
    /// delete range) in one branch, nested txns included.
    public static func validate(_ request: TxnRequest) throws(KVError) {
        if request.compare.count > maxTxnOperations || request.success.count > maxTxnOperations
            || request.failure.count > maxTxnOperations
        {
            throw .tooManyOperations
        }
        _ = try checkIntervals(request.success)
        _ = try checkIntervals(request.failure)
    }

    /// etcd's `checkIntervals`: the keys a branch puts, and the ranges it deletes,
    /// nested txns included; a key put twice, or put and deleted, is an error.
    /// The two branches of a nested txn exclude each other, so they may both put
    /// the same key.
    private static func checkIntervals(_ ops: [RequestOp]) throws(KVError) -> (puts: Set<[UInt8]>, deletes: [KeyRange]) {
        var deletes: [KeyRange] = []
        for case let .deleteRange(d) in ops {
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

    /// Checks a branch against the store before applying anything, so a txn
    /// either applies whole or fails with no effect (etcd's `checkRequests`).
    private func check(_ ops: [RequestOp], at current: Int64) throws(KVError) {
        for op in ops {
            switch op {
            case let .range(r):
                let at = r.revision > 0 ? r.revision : current
                if at > current { throw .futureRevision }
                if at < compactedRevision { throw .compacted }
            case let .put(p):
                try checkPut(p)
            case let .txn(inner):
                let succeeded = inner.compare.allSatisfy { evaluate($0, at: current) }
                try check(succeeded ? inner.success : inner.failure, at: current)
            case .deleteRange:
                break
            }
        }
    }

    private func apply(_ ops: [RequestOp], _ context: inout WriteContext) throws(KVError) -> [ResponseOp] {
        var responses: [ResponseOp] = []
        responses.reserveCapacity(ops.count)
        for op in ops {
            switch op {
            case let .range(r):
                responses.append(.range(try range(r, at: context.readRevision)))
            case let .put(p):
                let previous = applyPut(p, &context)
                responses.append(.put(PutResponse(previous: p.prevKV ? previous : nil)))
            case let .deleteRange(d):
                let deleted = applyDelete(d, &context)
                responses.append(.deleteRange(DeleteRangeResponse(
                    deleted: Int64(deleted.count), previous: d.prevKV ? deleted : [])))
            case let .txn(inner):
                let succeeded = inner.compare.allSatisfy { evaluate($0, at: context.readRevision) }
                let nested = try apply(succeeded ? inner.success : inner.failure, &context)
                responses.append(.txn(TxnResponse(succeeded: succeeded, responses: nested)))
            }
        }
        return responses
    }

    /// etcd's `applyCompare`: every key in the range must satisfy the comparison;
    /// a missing key compares as zeroes, except that a value comparison on a
    /// missing key always fails.
    func evaluate(_ compare: Compare, at main: Int64) -> Bool {
        var kvs: [KeyValue] = []
        visit(KeyRange(key: compare.key, rangeEnd: compare.rangeEnd)) { _, history in
            if let kv = history.visible(at: main) { kvs.append(kv) }
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
        }
        switch compare.result {
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .greater: return order > 0
        case .less: return order < 0
        }
    }
}

extension TxnResponse {
    /// Every response in the txn reports the store revision after it, as etcd's
    /// response headers do.
    mutating func fillRevisions(_ revision: Int64) {
        self.revision = revision
        for i in responses.indices {
            switch responses[i] {
            case var .range(r):
                r.revision = revision
                responses[i] = .range(r)
            case var .put(p):
                p.revision = revision
                responses[i] = .put(p)
            case var .deleteRange(d):
                d.revision = revision
                responses[i] = .deleteRange(d)
            case var .txn(t):
                t.fillRevisions(revision)
                responses[i] = .txn(t)
            }
        }
    }
}
