// Replaying changes from history, for watchers that start in the past or fell
// behind.

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
    /// included). Changes are located first and only those returned are
    /// built, so values spilled to files are read back for these alone.
    func events(
        in range: KeyRange, from first: Int64, through last: Int64, limit: Int, maxBytes: Int = .max
    ) -> (events: [Event], through: Int64) {
        guard first <= last else { return ([], last) }
        var found: [(revision: Revision, key: [UInt8], history: KeyHistory, index: Int)] = []
        visit(range) { key, history in
            // Versions are sorted: start at the first with main >= first.
            var i = first > .min ? history.firstIndex(after: first - 1) : 0
            while i < history.versions.count, history.versions[i].revision.main <= last {
                found.append((history.versions[i].revision, key, history, i))
                i += 1
            }
            return true
        }
        found.sort { $0.revision < $1.revision }
        var through = last
        var bytes = 0
        for (n, change) in found.enumerated() {
            let versions = change.history.versions
            bytes += 48 + 2 * change.key.count + versions[change.index].valueCount
                + (change.index > 0 ? versions[change.index - 1].valueCount : 0)
            guard n + 1 >= limit || bytes >= maxBytes else { continue }
            // Stop at a revision boundary: a revision is never split.
            let cut = change.revision.main
            if let beyond = found[(n + 1)...].firstIndex(where: { $0.revision.main > cut }) {
                found.removeSubrange(beyond...)
                through = cut
            }
            break
        }
        let events = found.map { change -> Event in
            let versions = change.history.versions
            let previous = change.index > 0 ? versions[change.index - 1].kv(key: change.key) : nil
            if let kv = versions[change.index].kv(key: change.key) {
                return Event(kind: .put, kv: kv, previous: previous)
            }
            let tombstone = KeyValue(
                key: change.key, createRevision: 0, modRevision: change.revision.main, version: 0, value: [], lease: 0)
            return Event(kind: .delete, kv: tombstone, previous: previous)
        }
        return (events, through)
    }
}
