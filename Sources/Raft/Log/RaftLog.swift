/// The log as Raft sees it: the durable part in `storage` followed by the
/// `unstable` part not yet persisted, with the commit and apply cursors.
///
/// Invariant: `applied <= committed <= lastIndex`.
struct RaftLog<Storage: RaftLogStorage> {
    let storage: Storage
    var unstable: UnstableLog
    /// Highest index known to be committed.
    var committed: UInt64
    /// Highest index the application has applied (reported through `advance`).
    var applied: UInt64
    /// Bytes of committed entries handed out per Ready.
    let maxApplyBytes: Int

    init(storage: Storage, committed: UInt64, applied: UInt64, maxApplyBytes: Int) {
        self.storage = storage
        self.unstable = UnstableLog(offset: storage.lastIndex + 1)
        let floor = storage.firstIndex - 1
        self.committed = max(committed, floor)
        self.applied = min(max(applied, floor), self.committed)
        self.maxApplyBytes = maxApplyBytes
    }

    var firstIndex: UInt64 { unstable.firstIndex ?? storage.firstIndex }
    var lastIndex: UInt64 { unstable.lastIndex ?? storage.lastIndex }

    /// Last index already on stable storage (what a leader may count for itself).
    var persistedLastIndex: UInt64 {
        unstable.snapshot == nil ? unstable.offset - 1 : 0
    }

    /// Term at `index`, or nil when it is compacted away or beyond the log.
    func term(at index: UInt64) -> UInt64? {
        if index < firstIndex - 1 || index > lastIndex { return nil }
        if let term = unstable.term(at: index) { return term }
        return try? storage.term(at: index)
    }

    var lastTerm: UInt64 { term(at: lastIndex) ?? 0 }

    func matchTerm(_ index: UInt64, _ term: UInt64) -> Bool {
        self.term(at: index) == term
    }

    /// Election restriction (§5.4.1): is a log ending at (`index`, `term`) at
    /// least as up to date as ours?
    func isUpToDate(index: UInt64, term: UInt64) -> Bool {
        let ourTerm = lastTerm
        return term > ourTerm || (term == ourTerm && index >= lastIndex)
    }

    /// Index of the first entry that is new or conflicts with ours, or 0.
    func findConflict(_ entries: [Entry]) -> UInt64 {
        for entry in entries where !matchTerm(entry.index, entry.term) {
            return entry.index
        }
        return 0
    }

    /// The largest index `<= index` whose term is `<= term`, with that term.
    /// Lets a rejection skip a whole term of mismatching entries (§5.3 optimisation).
    func findConflictByTerm(index: UInt64, term: UInt64) -> (index: UInt64, term: UInt64) {
        var i = index
        while true {
            guard let ourTerm = self.term(at: i) else { return (i, 0) }
            if ourTerm <= term || i == 0 { return (i, ourTerm) }
            i -= 1
        }
    }

    /// AppendEntries receiver rules 2–5 (Figure 2). Returns the index of the last
    /// entry the message covered, or nil when `index`/`logTerm` do not match.
    /// Truncates only on a real conflict, never because a message is short or stale.
    mutating func maybeAppend(index: UInt64, logTerm: UInt64, commit: UInt64, entries: [Entry]) -> UInt64? {
        guard matchTerm(index, logTerm) else { return nil }
        let lastNew = index + UInt64(entries.count)
        let conflict = findConflict(entries)
        if conflict != 0 {
            precondition(conflict > committed, "entry \(conflict) conflicts with committed entry (committed \(committed))")
            append(Array(entries[Int(conflict - index - 1)...]))
        }
        commitTo(min(commit, lastNew))
        return lastNew
    }

    /// Appends entries whose first index is at most `lastIndex + 1`.
    mutating func append(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        precondition(first.index > committed, "appending over committed index \(committed)")
        unstable.truncateAndAppend(entries)
    }

    /// Entries from `lo`, at most `maxBytes` (at least one when any exist).
    func entries(from lo: UInt64, maxBytes: Int) throws(StorageError) -> [Entry] {
        if lo > lastIndex { return [] }
        return try slice(lo, lastIndex + 1, maxBytes: maxBytes)
    }

    /// Entries in `lo..<hi`, stopping once `maxBytes` is reached.
    func slice(_ lo: UInt64, _ hi: UInt64, maxBytes: Int) throws(StorageError) -> [Entry] {
        if lo < firstIndex { throw .compacted }
        if hi > lastIndex + 1 { throw .unavailable }
        if lo >= hi { return [] }
        var result: [Entry] = []
        var bytes = 0
        if lo < unstable.offset {
            let stored = try storage.entries(lo..<min(hi, unstable.offset), maxBytes: maxBytes)
            result = stored
            bytes = stored.byteSize
            if UInt64(stored.count) < min(hi, unstable.offset) - lo { return result }
        }
        if hi > unstable.offset {
            for entry in unstable.slice(max(lo, unstable.offset), hi) {
                bytes += entry.byteSize
                if !result.isEmpty && bytes > maxBytes { break }
                result.append(entry)
            }
        }
        return result
    }

    mutating func commitTo(_ index: UInt64) {
        guard index > committed else { return }
        precondition(index <= lastIndex, "commit \(index) beyond last index \(lastIndex)")
        committed = index
    }

    /// Commits `index` if its entry is from `term` (§5.4.2: only current-term
    /// entries are committed by counting replicas).
    mutating func maybeCommit(index: UInt64, term: UInt64) -> Bool {
        guard index > committed, self.term(at: index) == term else { return false }
        commitTo(index)
        return true
    }

    var hasNextCommittedEntries: Bool {
        unstable.snapshot == nil && committed > applied
    }

    /// Committed entries the application has not applied yet, bounded in bytes.
    func nextCommittedEntries() -> [Entry] {
        guard hasNextCommittedEntries else { return [] }
        return (try? slice(applied + 1, committed + 1, maxBytes: maxApplyBytes)) ?? []
    }

    mutating func appliedTo(_ index: UInt64) {
        guard index > applied else { return }
        precondition(index <= committed, "applied \(index) beyond committed \(committed)")
        applied = index
    }

    /// The most recent snapshot: one being installed, else the stored one.
    func snapshot() throws(StorageError) -> Snapshot {
        if let snapshot = unstable.snapshot { return snapshot }
        return try storage.snapshot()
    }

    /// Replaces the log with `snapshot` (a follower installing a leader's snapshot).
    mutating func restore(_ snapshot: Snapshot) {
        committed = snapshot.metadata.index
        unstable.restore(snapshot)
    }
}
