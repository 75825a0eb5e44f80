/// Entries (and possibly a snapshot) that Raft holds but the driver has not yet
/// reported as persisted. Ready hands them out; `stableTo` retires them.
///
/// Invariant: when `snapshot` is set, `offset == snapshot.index + 1`;
/// `entries[i].index == offset + i`.
struct UnstableLog: Sendable {
    var snapshot: Snapshot?
    var entries: [Entry] = []
    var offset: UInt64

    init(offset: UInt64) { self.offset = offset }

    /// First index, if the unstable part knows it (only through a snapshot).
    var firstIndex: UInt64? { snapshot.map { $0.metadata.index + 1 } }

    /// Last index, if the unstable part holds anything.
    var lastIndex: UInt64? {
        if let last = entries.last { return last.index }
        return snapshot?.metadata.index
    }

    /// Term at `index`, if the unstable part knows it.
    func term(at index: UInt64) -> UInt64? {
        if index < offset {
            if let snapshot, snapshot.metadata.index == index { return snapshot.metadata.term }
            return nil
        }
        guard let last = lastIndex, index <= last else { return nil }
        if entries.isEmpty { return snapshot?.metadata.term }
        return entries[Int(index - offset)].term
    }

    /// The driver persisted entries up to `index` with `term`. Ignored when the
    /// entry there has since been replaced (a newer leader's entry).
    mutating func stableTo(index: UInt64, term: UInt64) {
        guard index >= offset, let t = self.term(at: index), t == term else { return }
        let count = Int(index - offset + 1)
        if count >= entries.count {
            entries.removeAll(keepingCapacity: true)
        } else {
            entries.removeFirst(count)
        }
        offset = index + 1
    }

    mutating func stableSnapshotTo(index: UInt64) {
        if let snapshot, snapshot.metadata.index == index { self.snapshot = nil }
    }

    mutating func restore(_ snapshot: Snapshot) {
        offset = snapshot.metadata.index + 1
        entries.removeAll()
        self.snapshot = snapshot
    }

    /// Appends `newEntries`, first dropping any held entries at or after their start.
    mutating func truncateAndAppend(_ newEntries: [Entry]) {
        guard let from = newEntries.first?.index else { return }
        if from == offset + UInt64(entries.count) {
            entries.append(contentsOf: newEntries)
        } else if from <= offset {
            // Replaces everything unstable; entries before `from` are in storage.
            offset = from
            entries = newEntries
        } else {
            entries.removeSubrange(Int(from - offset)...)
            entries.append(contentsOf: newEntries)
        }
    }

    /// Entries in `lo..<hi`; the caller checked the bounds.
    func slice(_ lo: UInt64, _ hi: UInt64) -> ArraySlice<Entry> {
        entries[Int(lo - offset)..<Int(hi - offset)]
    }
}
