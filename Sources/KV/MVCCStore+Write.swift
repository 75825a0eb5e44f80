// Writes: put, delete-range and txn, each one write transaction.

extension MVCCStore {
    /// The revision and change counter of the write transaction in progress.
    struct WriteContext {
        let main: Int64
        var sub: Int64 = 0
        var events: [Event] = []

        /// Reads inside the transaction see its own writes.
        var readRevision: Int64 { events.isEmpty ? main - 1 : main }

        mutating func next() -> Revision {
            defer { sub += 1 }
            return Revision(main: main, sub: sub)
        }
    }

    /// Runs `body` as one write transaction; the store revision advances only if
    /// it changed something. Returns the events, in order.
    func write<R>(_ body: (inout WriteContext) throws(KVError) -> R) throws(KVError) -> (R, [Event]) {
        var context = WriteContext(main: revision + 1)
        let result = try body(&context)
        if !context.events.isEmpty { revision = context.main }
        return (result, context.events)
    }

    /// Puts a key. Returns the response and the one event.
    public func put(_ request: PutRequest) throws(KVError) -> (PutResponse, [Event]) {
        try Self.validate(put: request)
        try checkPut(request)
        let (previous, events) = try write { (context: inout WriteContext) throws(KVError) in
            applyPut(request, &context)
        }
        return (PutResponse(previous: request.prevKV ? previous : nil, revision: revision), events)
    }

    /// Deletes a key or range. Deleting nothing does not advance the revision.
    public func deleteRange(_ request: DeleteRangeRequest) throws(KVError) -> (DeleteRangeResponse, [Event]) {
        try Self.validate(delete: request)
        let result = try? write { (context: inout WriteContext) throws(KVError) in
            applyDelete(request, &context)
        }
        guard let (deleted, events) = result else { return (DeleteRangeResponse(revision: revision), []) }
        var response = DeleteRangeResponse(deleted: Int64(deleted.count), revision: revision)
        if request.prevKV { response.previous = deleted }
        return (response, events)
    }

    /// What etcd checks when applying a put: the lease, then that a key
    /// exists when its value or lease is kept (a Put); the other way round in
    /// a txn (`checkRequestPut`, `keyFirst`).
    func checkPut(_ request: PutRequest, keyFirst: Bool = false) throws(KVError) {
        if request.key.isEmpty { throw .emptyKey }
        let missingKey = (request.ignoreValue || request.ignoreLease) && index.value(for: request.key)?.latest == nil
        if keyFirst && missingKey { throw .keyNotFound }
        if request.lease != 0 && !leaseExists(request.lease) { throw .leaseNotFound }
        if missingKey { throw .keyNotFound }
    }

    /// Applies a validated put; returns the previous state.
    func applyPut(_ request: PutRequest, _ context: inout WriteContext) -> KeyValue? {
        operations.puts += 1
        let revision = context.next()
        var event: Event?
        let log = historyValues
        let previous: KeyValue? = index.update(request.key, orInsert: { KeyHistory() }) { history in
            let previous = history.latest
            let before = history.beforeRevision(revision.main, latest: previous, key: request.key)
            if let log { history.spillLatest(into: log) }
            let kv = KeyValue(
                // The previous version's key array, if any: one copy per key, not per version.
                key: previous?.key ?? request.key,
                createRevision: previous?.createRevision ?? revision.main,
                modRevision: revision.main,
                version: (previous?.version ?? 0) + 1,
                value: request.ignoreValue ? previous?.value ?? [] : request.value,
                lease: request.ignoreLease ? previous?.lease ?? 0 : request.lease)
            history.versions.append(.init(revision: revision, kv: kv))
            approximateBytes += KeyHistory.size(key: request.key, valueCount: kv.value.count)
            event = Event(kind: .put, kv: kv, previous: before)
            return previous
        }
        if previous == nil { liveKeys += 1 }
        if let event {
            changes.append(revision, key: event.kv.key)
            context.events.append(event)
        }
        return previous
    }

    /// Applies a delete; returns the deleted keys' last states.
    func applyDelete(_ request: DeleteRangeRequest, _ context: inout WriteContext) -> [KeyValue] {
        operations.deletes += 1
        let range = KeyRange(key: request.key, rangeEnd: request.rangeEnd)
        var doomed: [[UInt8]] = []
        visit(range) { key, history in
            if history.latest != nil { doomed.append(key) }
            return true
        }
        var deleted: [KeyValue] = []
        deleted.reserveCapacity(doomed.count)
        let log = historyValues
        for key in doomed {
            let revision = context.next()
            index.modify(key) { history in
                guard let previous = history.latest else { return }
                let before = history.beforeRevision(revision.main, latest: previous, key: key)
                if let log { history.spillLatest(into: log) }
                history.versions.append(.init(revision: revision, kv: nil))
                approximateBytes += KeyHistory.size(key: key, valueCount: 0)
                deleted.append(previous)
                changes.append(revision, key: previous.key)
                let tombstone = KeyValue(key: key, createRevision: 0, modRevision: revision.main, version: 0, value: [], lease: 0)
                context.events.append(Event(kind: .delete, kv: tombstone, previous: before))
            }
        }
        liveKeys -= deleted.count
        return deleted
    }
}
