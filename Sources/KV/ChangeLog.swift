import DequeModule

/// Which key each retained change touched, in revision order: the store's
/// second index, beside the key-ordered one. A watcher that fell behind over
/// a wide range reads the changes since its revision from here instead of
/// visiting every key in its range (etcd reads its key bucket by revision for
/// the same reason).
///
/// Invariants: sorted by revision; holds exactly the changes of the store's
/// key histories with a main revision at or above the compaction revision
/// (older ones no watch can ask for are trimmed). Each entry shares its key's
/// array with the history, so it costs one revision and one reference.
struct ChangeLog {
    struct Entry {
        var revision: Revision
        var key: [UInt8]
    }

    private(set) var entries = Deque<Entry>()

    var count: Int { entries.count }

    subscript(position: Int) -> Entry { entries[position] }

    /// Records a change; `revision` must be above every recorded one.
    mutating func append(_ revision: Revision, key: [UInt8]) {
        entries.append(Entry(revision: revision, key: key))
    }

    /// The position of the first change with a main revision at or above
    /// `main` (`count` if none).
    func firstPosition(atOrAbove main: Int64) -> Int {
        var low = 0
        var high = entries.count
        while low < high {
            let mid = (low + high) / 2
            if entries[mid].revision.main < main { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Forgets the changes below main revision `main` (a compaction).
    mutating func trim(below main: Int64) {
        let drop = firstPosition(atOrAbove: main)
        if drop > 0 { entries.removeFirst(drop) }
    }

    /// The log of restored histories: their changes at or above `compacted`.
    init(histories: [([UInt8], KeyHistory)], compacted: Int64) {
        var all: [Entry] = []
        for (key, history) in histories {
            for version in history.versions where version.revision.main >= compacted {
                all.append(Entry(revision: version.revision, key: key))
            }
        }
        all.sort { $0.revision < $1.revision }
        entries = Deque(all)
    }

    init() {}
}
