/// A ``RaftLogStorage`` held in memory. In the simulation it plays the disk:
/// whatever the driver has written here survives a simulated crash, nothing else.
/// `RaftStorage.DiskStorage` is the durable implementation.
public final class MemoryStorage: RaftLogStorage {
    public private(set) var hardState = HardState()
    public private(set) var latestSnapshot = Snapshot()
    /// `entries[0]` is a dummy holding the snapshot's index and term.
    /// Invariant: `entries[i].index == entries[0].index + i`.
    private var log: [Entry] = [Entry(term: 0, index: 0)]

    public init() {}

    public func initialState() throws(StorageError) -> (hardState: HardState, confState: ConfState) {
        (hardState, latestSnapshot.metadata.confState)
    }

    private var offset: UInt64 { log[0].index }

    public var firstIndex: UInt64 { offset + 1 }
    public var lastIndex: UInt64 { offset + UInt64(log.count - 1) }

    public func term(at index: UInt64) throws(StorageError) -> UInt64 {
        if index < offset { throw .compacted }
        if index > lastIndex { throw .unavailable }
        return log[Int(index - offset)].term
    }

    public func entries(_ range: Range<UInt64>, maxBytes: Int) throws(StorageError) -> [Entry] {
        if range.lowerBound <= offset { throw .compacted }
        if range.upperBound > lastIndex + 1 { throw .unavailable }
        if range.isEmpty { return [] }
        let lo = Int(range.lowerBound - offset)
        let hi = Int(range.upperBound - offset)
        var result: [Entry] = []
        var bytes = 0
        for i in lo..<hi {
            let entry = log[i]
            bytes += entry.byteSize
            if !result.isEmpty && bytes > maxBytes { break }
            result.append(entry)
        }
        return result
    }

    public func snapshot() throws(StorageError) -> Snapshot { latestSnapshot }

    // MARK: Writes (the driver's side)

    public func setHardState(_ state: HardState) { hardState = state }

    /// Appends entries, replacing any existing suffix from the first entry's index.
    public func append(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        // Entries already covered by the snapshot are ignored.
        let kept = entries.drop { $0.index <= offset }
        guard let start = kept.first?.index else { return }
        precondition(start <= lastIndex + 1, "gap in log: appending \(first.index) after \(lastIndex)")
        log.removeSubrange(Int(start - offset)...)
        log.append(contentsOf: kept)
    }

    /// Replaces the whole log with `snapshot` (a follower installing one).
    public func applySnapshot(_ snapshot: Snapshot) {
        guard snapshot.metadata.index > latestSnapshot.metadata.index else { return }
        latestSnapshot = snapshot
        log = [Entry(term: snapshot.metadata.term, index: snapshot.metadata.index)]
    }

    /// Records a snapshot the application took at `index` (which must be in the log).
    public func createSnapshot(index: UInt64, confState: ConfState, data: [UInt8]) throws(StorageError) {
        guard index > latestSnapshot.metadata.index else { return }
        let term = try term(at: index)
        latestSnapshot = Snapshot(metadata: SnapshotMetadata(index: index, term: term, confState: confState), data: data)
    }

    /// Drops entries up to and including `index`, which must be covered by a snapshot.
    public func compact(upTo index: UInt64) throws(StorageError) {
        if index <= offset { return }
        if index > lastIndex { throw .unavailable }
        precondition(index <= latestSnapshot.metadata.index, "compacting past the snapshot")
        let term = log[Int(index - offset)].term
        log.removeSubrange(0..<Int(index - offset))
        log[0] = Entry(term: term, index: index)
    }
}
