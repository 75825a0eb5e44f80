/// Every retained version of one key, oldest first (etcd's `keyIndex`, holding
/// the values too). A `nil` value is a tombstone: it ends a generation, and the
/// next put starts a new one with version 1.
///
/// Invariant: `versions` is sorted by revision and never starts with a tombstone
/// after compaction.
struct KeyHistory: Sendable {
    struct Version: Sendable {
        var revision: Revision
        /// The state after this change; nil for a deletion.
        var kv: KeyValue?
    }

    var versions: [Version] = []

    /// Bytes counted per version besides its key and value (revisions, version,
    /// lease, index entry), for ``MVCCStore/approximateBytes``.
    static let versionOverhead = 64

    static func size(key: [UInt8], kv: KeyValue?) -> Int {
        key.count + (kv?.value.count ?? 0) + versionOverhead
    }

    func size(key: [UInt8]) -> Int {
        versions.reduce(0) { $0 + Self.size(key: key, kv: $1.kv) }
    }

    /// The current state, if the key exists now.
    var latest: KeyValue? { versions.last?.kv }

    /// The state visible at store revision `main`.
    func visible(at main: Int64) -> KeyValue? {
        // Binary search for the last version with revision.main <= main.
        var low = 0
        var high = versions.count
        while low < high {
            let mid = (low + high) / 2
            if versions[mid].revision.main <= main { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : versions[low - 1].kv
    }

    /// Drops what no read or watch at or after `main` can see: everything before
    /// the last version at or below `main`, and that version too if it is a
    /// tombstone from before `main`. A tombstone exactly at `main` stays until
    /// the next compaction, so a watch starting at the compaction revision sees
    /// that delete (etcd's `keyIndex.compact` keeps it too).
    /// Returns false when nothing is left (the key can leave the index).
    mutating func compact(upTo main: Int64) -> Bool {
        var low = 0
        var high = versions.count
        while low < high {
            let mid = (low + high) / 2
            if versions[mid].revision.main <= main { low = mid + 1 } else { high = mid }
        }
        var keepFrom = max(low - 1, 0)
        if low > 0, versions[low - 1].kv == nil, versions[low - 1].revision.main < main { keepFrom = low }
        if keepFrom > 0 { versions.removeFirst(keepFrom) }
        return !versions.isEmpty
    }
}
