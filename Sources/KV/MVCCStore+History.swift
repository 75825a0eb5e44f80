// Replaying changes from history, for watchers that start in the past or fell
// behind.

import HeapModule

extension MVCCStore {
    /// The changes to keys in `range` with revisions in `first...last`, in
    /// revision order, each with the key's previous state. `first` must not be
    /// below the compaction point (the caller checks).
    func events(in range: KeyRange, from first: Int64, through last: Int64) -> [Event] {
        events(in: range, from: first, through: last, limit: .max).events
    }

    /// ``events(in:from:through:)`` for at most about `limit` events and
    /// `maxBytes` bytes of keys and values: whole revisions from `first` on,
    /// as many as fit (one revision larger than the bounds comes whole), and
    /// the last revision covered (`last` when every change up to it is
    /// included). The keys' histories are merged in revision order and the
    /// merge stops at the bounds, so a watcher far behind costs what it is
    /// sent (and one cursor per key), not its whole backlog each time; only
    /// the changes returned are built, so values spilled to files are read
    /// back for these alone.
    func events(
        in range: KeyRange, from first: Int64, through last: Int64, limit: Int, maxBytes: Int = .max
    ) -> (events: [Event], through: Int64) {
        guard first <= last else { return ([], last) }
        // One cursor per key with a change in first...last, at its first such version.
        var cursors: [(key: [UInt8], history: KeyHistory, index: Int)] = []
        var heads: [HistoryHead] = []
        visit(range) { key, history in
            // Versions are sorted: start at the first with main >= first.
            let i = first > .min ? history.firstIndex(after: first - 1) : 0
            if i < history.versions.count, history.versions[i].revision.main <= last {
                heads.append(HistoryHead(revision: history.versions[i].revision, cursor: cursors.count))
                cursors.append((key, history, i))
            }
            return true
        }
        var merge = Heap(heads)
        var picked: [(key: [UInt8], history: KeyHistory, index: Int)] = []
        var through = last
        var bytes = 0
        while let head = merge.popMin() {
            // Bounds reached: stop at a revision boundary (a revision is never split).
            if picked.count >= limit || bytes >= maxBytes,
                let previous = picked.last, head.revision.main > previous.history.versions[previous.index].revision.main
            {
                through = previous.history.versions[previous.index].revision.main
                break
            }
            let cursor = cursors[head.cursor]
            let versions = cursor.history.versions
            picked.append(cursor)
            bytes += 48 + 2 * cursor.key.count + versions[cursor.index].valueCount
                + (cursor.index > 0 ? versions[cursor.index - 1].valueCount : 0)
            let next = cursor.index + 1
            if next < versions.count, versions[next].revision.main <= last {
                cursors[head.cursor].index = next
                merge.insert(HistoryHead(revision: versions[next].revision, cursor: head.cursor))
            }
        }
        let events = picked.map { change -> Event in
            let versions = change.history.versions
            let revision = versions[change.index].revision
            let previous = change.index > 0 ? versions[change.index - 1].kv(key: change.key) : nil
            if let kv = versions[change.index].kv(key: change.key) {
                return Event(kind: .put, kv: kv, previous: previous)
            }
            let tombstone = KeyValue(
                key: change.key, createRevision: 0, modRevision: revision.main, version: 0, value: [], lease: 0)
            return Event(kind: .delete, kv: tombstone, previous: previous)
        }
        return (events, through)
    }
}

/// A key's next change in a history merge, ordered by revision (revisions
/// are unique across keys).
struct HistoryHead: Comparable {
    var revision: Revision
    var cursor: Int

    static func < (a: HistoryHead, b: HistoryHead) -> Bool { a.revision < b.revision }
}
