/// The multi-version key–value store behind Ensemble's etcd API: a pure state
/// machine that the Raft apply loop drives, so every member holds the same
/// history (etcd's `mvcc` package, kept in memory; durability comes from the Raft
/// log and snapshots).
///
/// Every write transaction — a put, a delete, or a txn with writes — gets the next
/// store revision; the changes inside it are numbered by `sub`. Reads see any
/// retained revision. Compaction forgets history no read at or after the
/// compaction revision can see.
///
/// Invariants: `compactedRevision <= revision`; each key's history is sorted by
/// revision. Not thread-safe: owned by the apply loop.
public final class MVCCStore {
    /// The revision of the last write transaction (1 for an empty store, as etcd).
    public internal(set) var revision: Int64 = 1
    /// Reads below this revision fail with ``KVError/compacted``; -1 until the
    /// first compaction, as etcd's `compactMainRev` (so compacting at 0 works).
    public internal(set) var compactedRevision: Int64 = -1
    /// Keys that exist at the current revision.
    public internal(set) var liveKeys = 0
    /// What the retained history occupies, roughly: keys and values of every
    /// version plus a fixed overhead each (``KeyHistory/versionOverhead``). It is
    /// what etcd calls the database size (Status `dbSize`, the space quota).
    public internal(set) var approximateBytes = 0
    let index = ByteKeyTree<KeyHistory>()
    /// The same changes in revision order, for watchers replaying history.
    var changes = ChangeLog()
    /// Keys with any retained history (live or deleted but not yet compacted).
    public var keyCount: Int { index.count }
    /// Says whether a lease exists; puts naming an unknown lease are refused.
    public var leaseExists: (LeaseID) -> Bool = { _ in true }
    /// Where superseded values go; nil keeps every value in memory. Set it
    /// before the first write or restore (values already in memory stay there).
    public var historyValues: HistoryValueLog?
    /// Operations this store served and applied, for etcd's
    /// `etcd_mvcc_*_total` metrics (counted as etcd's mvcc counts them).
    public internal(set) var operations = OperationCounts()

    /// Ranges (calls and txn ranges), puts, deletes (one per DeleteRange,
    /// whatever it deletes), and transactions of more than one operation.
    public struct OperationCounts: Sendable, Equatable {
        public var ranges = 0
        public var puts = 0
        public var deletes = 0
        public var txns = 0
        public init() {}

        var total: Int { ranges + puts + deletes }

        /// What was counted after `earlier`; everything when the counts are
        /// of another store (any fell).
        public func since(_ earlier: OperationCounts) -> OperationCounts {
            guard ranges >= earlier.ranges, puts >= earlier.puts, deletes >= earlier.deletes, txns >= earlier.txns
            else { return self }
            var delta = OperationCounts()
            delta.ranges = ranges - earlier.ranges
            delta.puts = puts - earlier.puts
            delta.deletes = deletes - earlier.deletes
            delta.txns = txns - earlier.txns
            return delta
        }
    }

    public init() {}

    // MARK: Reads

    public func range(_ request: RangeRequest) throws(KVError) -> RangeResponse {
        try Self.validate(range: request)
        return try range(request, at: revision)
    }

    /// Reads as of `request.revision`, or `current` (inside a write transaction
    /// that already wrote, `current` is its own revision: it reads its writes).
    func range(_ request: RangeRequest, at current: Int64) throws(KVError) -> RangeResponse {
        operations.ranges += 1
        let at = request.revision > 0 ? request.revision : current
        if at > current { throw .futureRevision }
        if at < compactedRevision { throw .compacted }
        let keys = KeyRange(key: request.key, rangeEnd: request.rangeEnd)
        var response = RangeResponse()
        response.revision = current
        let filters = request.minModRevision != 0 || request.maxModRevision != 0
            || request.minCreateRevision != 0 || request.maxCreateRevision != 0
        // Without sorting or filters the limit can stop the scan early (one extra
        // key tells whether there is more); the count still covers the range.
        // (etcd pushes the limit down whenever the sort order is NONE — even for a
        // non-key target, which then sorts only the keys the limit kept.)
        let pushLimit = request.limit > 0 && request.sortOrder == .none && !filters
        var kvs: [KeyValue] = []
        var count: Int64 = 0
        // Values are read (some from the history files) only for the keys
        // kept: when the sort decides which a limit keeps, after it.
        let deferValues = request.limit > 0 && !pushLimit && !request.keysOnly && request.sortTarget != .value
        visit(keys) { key, history in
            guard let version = history.visibleVersion(at: at) else { return true }
            count += 1
            if request.countOnly { return true }
            if pushLimit && Int64(kvs.count) > request.limit { return true }
            let mod = version.revision.main
            let create = version.createRevision
            if request.maxModRevision != 0 && mod > request.maxModRevision { return true }
            if request.minModRevision != 0 && mod < request.minModRevision { return true }
            if request.maxCreateRevision != 0 && create > request.maxCreateRevision { return true }
            if request.minCreateRevision != 0 && create < request.minCreateRevision { return true }
            // keys_only still sorts by value (etcd clears values after sorting).
            let value = !deferValues && (!request.keysOnly || request.sortTarget == .value)
            if let kv = version.kv(key: key, value: value) { kvs.append(kv) }
            return true
        }
        response.count = count
        if request.countOnly { return response }
        sort(&kvs, request)
        if request.limit > 0 && Int64(kvs.count) > request.limit {
            kvs.removeSubrange(Int(request.limit)...)
            response.more = true
        }
        if deferValues {
            for i in kvs.indices {
                if let kv = index.value(for: kvs[i].key)?.visibleVersion(at: at)?.kv(key: kvs[i].key) { kvs[i] = kv }
            }
        }
        if request.keysOnly {
            for i in kvs.indices { kvs[i].value = [] }
        }
        response.kvs = kvs
        return response
    }

    private func sort(_ kvs: inout [KeyValue], _ request: RangeRequest) {
        var order = request.sortOrder
        // The scan is already ascending by key; other targets sort ascending by
        // default (etcd's applyRange).
        if order == .none && request.sortTarget != .key { order = .ascend }
        guard order != .none else { return }
        let ascending: (KeyValue, KeyValue) -> Bool
        switch request.sortTarget {
        case .key: ascending = { ByteKeyTree<Int>.compare($0.key, $1.key) < 0 }
        case .version: ascending = { $0.version < $1.version }
        case .create: ascending = { $0.createRevision < $1.createRevision }
        case .mod: ascending = { $0.modRevision < $1.modRevision }
        case .value: ascending = { ByteKeyTree<Int>.compare($0.value, $1.value) < 0 }
        }
        if order == .ascend {
            if request.sortTarget != .key { kvs.sort(by: ascending) }
        } else {
            // Swift's sort is stable: ties keep ascending key order, as etcd's
            // insertion sort over a reversed comparator leaves them.
            kvs.sort { ascending($1, $0) }
        }
    }

    /// Visits the keys of `range` in order until `body` returns false.
    func visit(_ range: KeyRange, _ body: ([UInt8], KeyHistory) -> Bool) {
        if range.isSingleKey {
            if let history = index.value(for: range.start) { _ = body(range.start, history) }
            return
        }
        if let end = range.end, ByteKeyTree<Int>.compare(end, range.start) <= 0 { return }
        index.scan(from: range.start, to: range.end, body)
    }
}
