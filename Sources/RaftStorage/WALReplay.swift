import Raft

/// Rebuilds the log from WAL records on top of the loaded snapshot `base`.
///
/// Only entries with index > `base.index` are kept; everything at or below it is
/// covered by the snapshot. Replay starts at the oldest retained segment, whose
/// predecessors were purged because all their entries were at or below a snapshot
/// index; entries they held are therefore either covered by `base` or were
/// overwritten later, so `tail` may start out with an unknown prefix that
/// ``finish()`` checks has been filled.
///
/// Record semantics mirror what ``DiskStorage`` did when writing them:
/// - segment header: gives the hard state and `lastIndex` at that point;
/// - batch: its snapshot marker (if any) as below, then entries (first index
///   `f`) drop everything from `f` on and are appended, so the log then ends at
///   the batch's last entry; then its hard state (if any) replaces the current one;
/// - snapshot marker (`keepLog`): nothing changes above the snapshot;
///   (`replaceLog`): the log becomes just the snapshot.
struct WALReplay {
    let baseIndex: UInt64
    let baseTerm: UInt64
    private(set) var hardState = HardState()
    /// Entries above `baseIndex`, ascending and contiguous.
    private(set) var tail: [Entry] = []
    /// Index of the log's last entry, known from the first segment header on.
    private(set) var lastIndex: UInt64?
    private(set) var recordsApplied = 0

    init(base: SnapshotMetadata) {
        baseIndex = base.index
        baseTerm = base.term
    }

    mutating func apply(_ located: LocatedRecord) throws(WALError) {
        recordsApplied += 1
        switch located.record {
        case let .segmentHeader(h):
            let headerLast = h.firstIndex &- 1
            if let lastIndex {
                guard lastIndex == headerLast, hardState == h.hardState else {
                    throw .corrupted(
                        file: located.file, offset: located.offset,
                        reason: "segment header (last index \(headerLast), hard state \(h.hardState)) disagrees "
                            + "with the preceding segments (last index \(lastIndex), hard state \(hardState))")
                }
            } else {
                lastIndex = headerLast
                hardState = h.hardState
            }
        case let .batch(b):
            if let m = b.snapshot { try applyMarker(m, at: located) }
            if let first = b.entries.first, let last = b.entries.last {
                if let lastIndex, first.index > lastIndex &+ 1 {
                    throw .corrupted(
                        file: located.file, offset: located.offset,
                        reason: "batch appends entry \(first.index) but the log ends at \(lastIndex)")
                }
                truncate(from: first.index)
                let kept = b.entries.drop { $0.index <= baseIndex }
                if let k = kept.first, let t = tail.last, k.index != t.index &+ 1 {
                    throw .corrupted(
                        file: located.file, offset: located.offset,
                        reason: "batch entry \(k.index) does not follow log entry \(t.index)")
                }
                tail.append(contentsOf: kept)
                lastIndex = last.index
            }
            if let hs = b.hardState { hardState = hs }
        case let .snapshotMarker(m):
            try applyMarker(m, at: located)
        }
    }

    private mutating func applyMarker(_ m: SnapshotMarker, at located: LocatedRecord) throws(WALError) {
        if m.index > baseIndex {
            // Only reached when the snapshot file for `m` could not be loaded and
            // an older one was: the WAL must still hold every entry in between.
            guard let first = tail.first, first.index == baseIndex &+ 1, m.index <= (tail.last?.index ?? 0),
                tail[Int(m.index - first.index)].term == m.term
            else {
                throw .unrecoverable(
                    "'\(located.file)' at offset \(located.offset) records snapshot at index \(m.index) term "
                        + "\(m.term), whose file is missing or corrupt, and the WAL does not hold entries "
                        + "\(baseIndex + 1)...\(m.index) to rebuild it from the snapshot at index \(baseIndex)")
            }
            if m.mode == .replaceLog {
                truncate(from: m.index &+ 1)
                lastIndex = m.index
            }
        } else {
            if m.index == baseIndex && m.term != baseTerm {
                throw .corrupted(
                    file: located.file, offset: located.offset,
                    reason: "snapshot marker at index \(m.index) has term \(m.term) but the snapshot file "
                        + "for that index has term \(baseTerm)")
            }
            if m.mode == .replaceLog {
                tail.removeAll()
                lastIndex = m.index
            }
        }
    }

    /// Drops tail entries with index >= `index`.
    private mutating func truncate(from index: UInt64) {
        guard let first = tail.first else { return }
        if index <= first.index {
            tail.removeAll()
        } else if index - first.index < UInt64(tail.count) {
            tail.removeSubrange(Int(index - first.index)...)
        }
    }

    /// The entries after the snapshot, checked to be complete.
    func finish() throws(WALError) -> [Entry] {
        let last = lastIndex ?? baseIndex
        if last <= baseIndex { return [] }
        guard let first = tail.first, first.index == baseIndex &+ 1, tail.last?.index == last else {
            throw .unrecoverable(
                "the WAL does not hold entries \(baseIndex + 1)...\(last) after the snapshot at index \(baseIndex) "
                    + "(have \(tail.first.map { "\($0.index)...\(last)" } ?? "none")); segments were deleted "
                    + "or the newest snapshot file is unreadable")
        }
        return tail
    }
}
