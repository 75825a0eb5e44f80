/// Every retained version of one key, oldest first (etcd's `keyIndex`, holding
/// the values too). A tombstone ends a generation, and the next put starts a
/// new one with version 1.
///
/// Invariants: `versions` is sorted by revision and never starts with a
/// tombstone after compaction; the last version is never `.spilled` (current
/// reads and writes stay in memory). Versions before it may be, when the store
/// has a ``HistoryValueLog``.
struct KeyHistory: Sendable {
    struct Version: Sendable {
        var revision: Revision
        var state: State

        init(revision: Revision, kv: KeyValue?) {
            self.revision = revision
            state = kv.map(State.value) ?? .tombstone
        }

        var isTombstone: Bool {
            if case .tombstone = state { return true }
            return false
        }

        /// Bytes of the value (0 for a tombstone).
        var valueCount: Int {
            switch state {
            case let .value(kv): kv.value.count
            case let .spilled(spilled): Int(spilled.value.count)
            case .tombstone: 0
            }
        }

        /// The generation's create revision (0 for a tombstone).
        var createRevision: Int64 {
            switch state {
            case let .value(kv): kv.createRevision
            case let .spilled(spilled): spilled.createRevision
            case .tombstone: 0
            }
        }

        /// The state after this change; nil for a deletion. A spilled value is
        /// read back from its file, unless `value` is false (then it is empty).
        func kv(key: [UInt8], value: Bool = true) -> KeyValue? {
            switch state {
            case var .value(kv):
                if !value { kv.value = [] }
                return kv
            case let .spilled(spilled):
                return KeyValue(
                    key: key, createRevision: spilled.createRevision, modRevision: revision.main,
                    version: spilled.version, value: value ? spilled.value.load() : [], lease: spilled.lease)
            case .tombstone:
                return nil
            }
        }
    }

    enum State: Sendable {
        /// In memory.
        case value(KeyValue)
        /// A superseded version whose value is in a ``HistoryValueLog``; the
        /// key and mod revision are the history's and the version's.
        case spilled(Spilled)
        case tombstone
    }

    struct Spilled: Sendable {
        var createRevision: Int64
        var version: Int64
        var lease: LeaseID
        var value: SpilledValue
    }

    var versions: [Version] = []

    /// Bytes counted per version besides its key and value (revisions, version,
    /// lease, index entry, and its ``ChangeLog`` entry), for
    /// ``MVCCStore/approximateBytes``.
    static let versionOverhead = 88

    static func size(key: [UInt8], valueCount: Int) -> Int {
        key.count + valueCount + versionOverhead
    }

    func size(key: [UInt8]) -> Int {
        versions.reduce(0) { $0 + Self.size(key: key, valueCount: $1.valueCount) }
    }

    /// The current state, if the key exists now (never read from disk).
    var latest: KeyValue? {
        guard let last = versions.last, case let .value(kv) = last.state else { return nil }
        return kv
    }

    /// The state visible at store revision `main`.
    func visible(at main: Int64, key: [UInt8]) -> KeyValue? {
        visibleVersion(at: main)?.kv(key: key)
    }

    /// The version visible at store revision `main`, unless the key does not
    /// exist then (no version yet, or a tombstone).
    func visibleVersion(at main: Int64) -> Version? {
        let after = firstIndex(after: main)
        guard after > 0, !versions[after - 1].isTombstone else { return nil }
        return versions[after - 1]
    }

    /// An event's previous state, as etcd's watch fills prev_kv (a range
    /// at the revision before): the state before the transaction of
    /// revision `main` — `latest`, unless that transaction already changed
    /// the key (a put and a delete of one key in one txn).
    func beforeRevision(_ main: Int64, latest: KeyValue?, key: [UInt8]) -> KeyValue? {
        guard let last = versions.last, last.revision.main == main else { return latest }
        return visible(at: main - 1, key: key)
    }

    /// The index of the first version with a revision above `main`.
    func firstIndex(after main: Int64) -> Int {
        var low = 0
        var high = versions.count
        while low < high {
            let mid = (low + high) / 2
            if versions[mid].revision.main <= main { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Moves the latest version's value to `log` before a newer version is
    /// appended (if the log takes it; otherwise it stays in memory).
    mutating func spillLatest(into log: HistoryValueLog) {
        guard let last = versions.indices.last, case let .value(kv) = versions[last].state,
            let value = log.append(kv.value)
        else { return }
        versions[last].state = .spilled(Spilled(createRevision: kv.createRevision, version: kv.version, lease: kv.lease, value: value))
    }

    /// Spills every version but the last (after a restore).
    mutating func spillAllButLatest(into log: HistoryValueLog) {
        for i in versions.indices.dropLast() {
            guard case let .value(kv) = versions[i].state, let value = log.append(kv.value) else { continue }
            versions[i].state = .spilled(Spilled(createRevision: kv.createRevision, version: kv.version, lease: kv.lease, value: value))
        }
    }

    /// Drops what no read or watch at or after `main` can see: everything before
    /// the last version at or below `main`, and that version too if it is a
    /// tombstone from before `main`. A tombstone exactly at `main` stays until
    /// the next compaction, so a watch starting at the compaction revision sees
    /// that delete (etcd keeps it from 3.4.34 on; 3.4.23 drops it — docs/kv.md).
    /// Returns false when nothing is left (the key can leave the index).
    mutating func compact(upTo main: Int64) -> Bool {
        let low = firstIndex(after: main)
        var keepFrom = max(low - 1, 0)
        if low > 0, versions[low - 1].isTombstone, versions[low - 1].revision.main < main { keepFrom = low }
        if keepFrom > 0 { versions.removeFirst(keepFrom) }
        return !versions.isEmpty
    }
}
