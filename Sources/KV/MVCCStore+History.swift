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

    /// How a replay finds its changes: ``automatic`` picks the cheaper of the
    /// other two; tests force one to compare them.
    enum ReplayPlan {
        case automatic
        /// Visit every key in range and merge their histories.
        case byKey
        /// Read the ``ChangeLog`` from the first revision, skipping other keys.
        case byRevision
        /// ``automatic`` with a first allowance other than 256 (tests).
        case automaticStarting(Int)
    }

    /// ``events(in:from:through:)`` for at most about `limit` events and
    /// `maxBytes` bytes of keys and values: whole revisions from `first` on,
    /// as many as fit (one revision larger than the bounds comes whole), and
    /// the last revision covered (`last` when every change up to it is
    /// included). Either way of finding the changes stops at the bounds, so
    /// a watcher far behind costs what it is sent, not its whole backlog each
    /// time; only the changes returned are built, so values spilled to files
    /// are read back for these alone.
    ///
    /// Cost: within a small factor of the cheaper way for this call — the
    /// keys in range (visited whole) or the changes (to any key) read from
    /// `first` until the bounds are met. Neither is known in advance, so
    /// the two are tried in turn with a doubling allowance: the change log
    /// read on, then the keys visited up to the allowance (a merge that
    /// finds more keys gives up). A watcher far behind on a wide prefix
    /// thus costs what it is sent each round, not every key in range.
    ///
    /// `previous`: whether events carry the key's previous state (a watcher
    /// without prev_kv does not read it back from a spill file, nor count it).
    func events(
        in range: KeyRange, from first: Int64, through last: Int64, limit: Int, maxBytes: Int = .max,
        previous: Bool = true, plan: ReplayPlan = .automatic
    ) -> (events: [Event], through: Int64) {
        // Nothing exists past the store's revision (and `last + 1` cannot overflow).
        let last = min(last, revision)
        guard first <= last else { return ([], last) }
        let window = changes.firstPosition(atOrAbove: first)..<changes.firstPosition(atOrAbove: last &+ 1)
        var picked = ReplaySelection(limit: limit, maxBytes: maxBytes, countsPrevious: previous)
        switch plan {
        case .byKey:
            mergeHistories(in: range, from: first, through: last, maxKeys: .max, into: &picked)
        case .byRevision:
            readChanges(in: range, window: window, into: &picked)
        case .automatic, .automaticStarting:
            if window.isEmpty { return ([], last) }
            // One key: its history is the cheapest way.
            if range.isSingleKey {
                mergeHistories(in: range, from: first, through: last, maxKeys: .max, into: &picked)
                break
            }
            var read = window.lowerBound
            var allowance = 256
            if case let .automaticStarting(first) = plan { allowance = max(first, 1) }
            while true {
                let end = window.upperBound - read <= allowance ? window.upperBound : read + allowance
                readChanges(in: range, window: read..<end, into: &picked)
                read = end
                if picked.through != nil || read == window.upperBound { break }
                var byKey = ReplaySelection(limit: limit, maxBytes: maxBytes, countsPrevious: previous)
                if mergeHistories(in: range, from: first, through: last, maxKeys: allowance, into: &byKey) {
                    picked = byKey
                    break
                }
                allowance = allowance > Int.max / 2 ? Int.max : allowance * 2
            }
        }
        let events = picked.changes.map { change -> Event in
            let versions = change.history.versions
            let revision = versions[change.index].revision
            // The state before this revision's txn (etcd's range at the
            // revision before), past any earlier change of it in that txn.
            var earlier = change.index
            while earlier > 0, versions[earlier - 1].revision.main == revision.main { earlier -= 1 }
            let before = previous && earlier > 0 ? versions[earlier - 1].kv(key: change.key) : nil
            if let kv = versions[change.index].kv(key: change.key) {
                return Event(kind: .put, kv: kv, previous: before)
            }
            let tombstone = KeyValue(
                key: change.key, createRevision: 0, modRevision: revision.main, version: 0, value: [], lease: 0)
            return Event(kind: .delete, kv: tombstone, previous: before)
        }
        return (events, picked.through ?? last)
    }

    /// Merges the histories of the keys in `range` in revision order into
    /// `picked`, unless the range holds more than `maxKeys` keys: then picks
    /// nothing and returns false.
    @discardableResult
    private func mergeHistories(
        in range: KeyRange, from first: Int64, through last: Int64, maxKeys: Int, into picked: inout ReplaySelection
    ) -> Bool {
        // One cursor per key with a change in first...last, at its first such version.
        var cursors: [ReplaySelection.Change] = []
        var heads: [HistoryHead] = []
        var visited = 0
        visit(range) { key, history in
            visited += 1
            if visited > maxKeys { return false }
            // Versions are sorted: start at the first with main >= first.
            let i = first > .min ? history.firstIndex(after: first - 1) : 0
            if i < history.versions.count, history.versions[i].revision.main <= last {
                heads.append(HistoryHead(revision: history.versions[i].revision, cursor: cursors.count))
                cursors.append(ReplaySelection.Change(key: key, history: history, index: i))
            }
            return true
        }
        if visited > maxKeys { return false }
        var merge = Heap(heads)
        while let head = merge.popMin() {
            let cursor = cursors[head.cursor]
            guard picked.take(cursor) else { break }
            let versions = cursor.history.versions
            let next = cursor.index + 1
            if next < versions.count, versions[next].revision.main <= last {
                cursors[head.cursor].index = next
                merge.insert(HistoryHead(revision: versions[next].revision, cursor: head.cursor))
            }
        }
        return true
    }

    /// Reads the change log over `window` into `picked`, keeping the changes
    /// to keys in `range`.
    private func readChanges(in range: KeyRange, window: Range<Int>, into picked: inout ReplaySelection) {
        for position in window {
            let entry = changes[position]
            guard range.contains(entry.key), let history = index.value(for: entry.key) else { continue }
            // The key's version at this exact revision (a txn may change a key
            // more than once in one main revision).
            var i = history.firstIndex(after: entry.revision.main - 1)
            while i < history.versions.count, history.versions[i].revision < entry.revision { i += 1 }
            guard i < history.versions.count, history.versions[i].revision == entry.revision else { continue }
            guard picked.take(ReplaySelection.Change(key: entry.key, history: history, index: i)) else { break }
        }
    }
}

/// The changes a replay has chosen so far, in revision order, and its bounds.
struct ReplaySelection {
    struct Change {
        var key: [UInt8]
        var history: KeyHistory
        var index: Int
    }

    let limit: Int
    let maxBytes: Int
    /// Whether the events will carry the previous state (its bytes count).
    let countsPrevious: Bool
    var changes: [Change] = []
    var bytes = 0
    /// Set when the bounds stopped the replay: the last revision taken.
    var through: Int64?

    init(limit: Int, maxBytes: Int, countsPrevious: Bool = true) {
        self.limit = limit
        self.maxBytes = maxBytes
        self.countsPrevious = countsPrevious
    }

    /// Takes the next change in revision order, unless the bounds are reached
    /// and it starts a new revision (a revision is never split): then records
    /// where the replay stopped and returns false.
    mutating func take(_ change: Change) -> Bool {
        let versions = change.history.versions
        if changes.count >= limit || bytes >= maxBytes, let previous = changes.last {
            let previousMain = previous.history.versions[previous.index].revision.main
            if versions[change.index].revision.main > previousMain {
                through = previousMain
                return false
            }
        }
        changes.append(change)
        bytes += 48 + 2 * change.key.count + versions[change.index].valueCount
            + (countsPrevious && change.index > 0 ? versions[change.index - 1].valueCount : 0)
        return true
    }
}

/// A key's next change in a history merge, ordered by revision (revisions
/// are unique across keys).
struct HistoryHead: Comparable {
    var revision: Revision
    var cursor: Int

    static func < (a: HistoryHead, b: HistoryHead) -> Bool { a.revision < b.revision }
}
