// Replaying changes from history, for watchers that start in the past or fell
// behind.

extension MVCCStore {
    /// The changes to keys in `range` with revisions in `first...last`, in
    /// revision order, each with the key's previous state. `first` must not be
    /// below the compaction point (the caller checks).
    func events(in range: KeyRange, from first: Int64, through last: Int64) -> [Event] {
        guard first <= last else { return [] }
        var found: [(Revision, Event)] = []
        visit(range) { key, history in
            // Versions are sorted: start at the first with main >= first.
            var i = first > .min ? history.firstIndex(after: first - 1) : 0
            guard i < history.versions.count, history.versions[i].revision.main <= last else { return true }
            var previous = i > 0 ? history.versions[i - 1].kv(key: key) : nil
            while i < history.versions.count, history.versions[i].revision.main <= last {
                let version = history.versions[i]
                let current = version.kv(key: key)
                defer { previous = current }
                if let kv = current {
                    found.append((version.revision, Event(kind: .put, kv: kv, previous: previous)))
                } else {
                    let tombstone = KeyValue(key: key, createRevision: 0, modRevision: version.revision.main, version: 0, value: [], lease: 0)
                    found.append((version.revision, Event(kind: .delete, kv: tombstone, previous: previous)))
                }
                i += 1
            }
            return true
        }
        found.sort { $0.0 < $1.0 }
        return found.map(\.1)
    }
}
