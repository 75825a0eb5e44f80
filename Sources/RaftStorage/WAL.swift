#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Raft

/// Where the log stands when a segment is created; becomes its ``SegmentHeader``.
struct LogPosition {
    var lastIndex: UInt64
    var snapshotIndex: UInt64
    var snapshotTerm: UInt64
    var hardState: HardState
}

/// The segmented write-ahead log in one directory: appends records to the last
/// segment, rolls over to a new one past the size limit, syncs in groups, and
/// deletes segments a snapshot made unnecessary. Replaying records into a log is
/// ``WALReplay``'s job; this type only knows bytes and files.
final class WAL {
    struct Segment {
        var name: SegmentName
        /// Highest entry index written to the segment (0 if none). A segment may
        /// be deleted once a snapshot covers this index.
        var maxEntryIndex: UInt64
    }

    /// What ``recover(directory:)`` found, and the repairs it calls for.
    struct Recovered {
        var segments: [Segment]
        var records: [LocatedRecord]
        /// Valid length of the last segment (where appending resumes).
        var lastSegmentLength: Int
        var warnings: [String]
        /// A torn tail to cut off (at `offset` of `file`) by ``applyRepairs(_:directory:)``.
        var tornTail: DiskStorage.TornTail?
        /// A last segment holding no complete record, to delete.
        var emptySegment: String?
        /// The torn tail's bytes up to its last non-zero one, kept in
        /// ``tornCopyPath`` before the cut: when the damage was in fact a
        /// synced group (the known limit in docs/storage.md), they are the
        /// only copy left on this member.
        var tornBytes: [UInt8] = []
        /// The last segment's valid bytes from `unprovenFrom` on: the last
        /// record's `syncedThrough`, after which nothing proves a sync
        /// succeeded. ``open`` writes them again before its fdatasync.
        var unprovenTail: [UInt8] = []
        var unprovenFrom = 0
    }

    /// Kept WAL bytes a recovery cut off (see ``Recovered/tornBytes``).
    static let tornSuffix = ".torn"

    /// Where the `n`-th copy of a torn tail cut at the same place goes.
    static func tornCopyPath(_ tail: DiskStorage.TornTail, _ n: Int = 0) -> String {
        n == 0 ? "\(tail.file).\(tail.offset)\(tornSuffix)" : "\(tail.file).\(tail.offset)-\(n)\(tornSuffix)"
    }

    let directory: String
    let segmentSize: Int
    /// Allocate each new segment's full size when creating it.
    let preallocate: Bool
    private(set) var segments: [Segment]
    private var writer: SegmentWriter?
    var stats = DiskStorage.Statistics()
    /// Set by the first failed write/sync: after it, what is durable is unknown
    /// (a failed fsync may have dropped dirty pages), so nothing more is written.
    private(set) var failure: WALError?
    /// Why purging stopped (``purge(upTo:)``); appends go on.
    private(set) var purgeFailure: WALError?

    private init(directory: String, segmentSize: Int, preallocate: Bool, segments: [Segment], writer: SegmentWriter?) {
        self.directory = directory
        self.segmentSize = segmentSize
        self.preallocate = preallocate
        self.segments = segments
        self.writer = writer
    }

    /// True when records were written since the last fdatasync.
    var hasUnsyncedWrites: Bool { (writer?.unsyncedBytes ?? 0) > 0 }

    var currentSegmentName: SegmentName? { writer?.name }

    // MARK: Recovery

    /// Reads and checks every segment in `directory` without changing anything:
    /// a torn tail of the last segment and a last segment left without records
    /// (a crash while creating it) are only reported, for
    /// ``applyRepairs(_:directory:)`` to fix once the whole state has been
    /// validated. Refusing to start must leave every file as it was.
    static func recover(directory: String) throws(WALError) -> Recovered {
        var warnings: [String] = []
        var names: [SegmentName] = []
        for file in try FileIO.listDirectory(directory) {
            if let name = SegmentName(fileName: file) {
                names.append(name)
            } else if file.hasSuffix(tornSuffix) {
                continue  // bytes an earlier recovery cut, kept for whoever looks into it
            } else {
                warnings.append("ignoring unexpected file '\(FileIO.joined(directory, file))' in the WAL directory")
            }
        }
        names.sort()
        for (a, b) in zip(names, names.dropFirst()) where b.sequence != a.sequence &+ 1 {
            if b.sequence == a.sequence {
                throw .unrecoverable(
                    "two WAL segments with sequence \(a.sequence) in '\(directory)': \(a.fileName) and \(b.fileName)")
            }
            throw .missingSegment(directory: directory, expectedSequence: a.sequence &+ 1, found: b.fileName)
        }

        var recovered = Recovered(segments: [], records: [], lastSegmentLength: 0, warnings: [])
        for (i, name) in names.enumerated() {
            let path = FileIO.joined(directory, name.fileName)
            let isLast = i == names.count - 1
            let bytes = try FileIO.readFile(path)
            let scan = try SegmentReader.scan(bytes, path: path, isLast: isLast)
            let maxIndex = try checkStructure(scan.records, of: name, path: path)
            if let reason = scan.tornReason {
                let tail = DiskStorage.TornTail(
                    file: path, offset: scan.validLength, droppedBytes: scan.fileLength - scan.validLength, reason: reason)
                recovered.tornTail = tail
                let end = (bytes.lastIndex { $0 != 0 } ?? 0) + 1
                recovered.tornBytes = end > scan.validLength ? Array(bytes[scan.validLength..<end]) : []
                warnings.append("truncated torn tail of '\(path)' at offset \(tail.offset) "
                    + "(\(tail.droppedBytes) bytes dropped: \(reason))")
            }
            if !isLast && scan.records.isEmpty {
                // Every segment's header is synced before the next one is
                // created: an empty one before the last was lost by the file
                // system, and with it entries this member may have acknowledged.
                throw .corrupted(file: path, offset: 0, reason: "a WAL segment before the last holds no record")
            }
            if isLast && scan.records.isEmpty {
                // Created but its header never became durable: the crash hit a rollover
                // (or the very first open). Everything before it is intact.
                if recovered.segments.isEmpty && name.sequence != 0 {
                    throw .unrecoverable(
                        "the only WAL segment '\(path)' holds no valid record, and earlier segments were purged; "
                            + "the hard state is lost")
                }
                recovered.emptySegment = path
                warnings.append("removed WAL segment '\(path)' that held no complete record")
                continue  // the previous segment, complete, becomes current again
            }
            recovered.segments.append(Segment(name: name, maxEntryIndex: maxIndex))
            recovered.records.append(contentsOf: scan.records)
            recovered.lastSegmentLength = scan.validLength
            recovered.unprovenFrom = scan.lastSyncedThrough
            recovered.unprovenTail = Array(bytes[scan.lastSyncedThrough..<scan.validLength])
        }
        recovered.warnings = warnings
        return recovered
    }

    /// Checks that a segment's records start with its header (and only there);
    /// returns the highest entry index they hold.
    private static func checkStructure(
        _ records: [LocatedRecord], of name: SegmentName, path: String
    ) throws(WALError) -> UInt64 {
        var maxIndex: UInt64 = 0
        for (j, located) in records.enumerated() {
            switch located.record {
            case let .segmentHeader(h):
                guard j == 0 else {
                    throw .corrupted(file: path, offset: located.offset, reason: "segment header in the middle of a segment")
                }
                guard h.sequence == name.sequence, h.firstIndex == name.firstIndex else {
                    throw .corrupted(
                        file: path, offset: 0,
                        reason: "segment header says sequence \(h.sequence), first index \(h.firstIndex), "
                            + "which does not match the file name")
                }
            case let .batch(b):
                if j == 0 { throw .corrupted(file: path, offset: 0, reason: "segment does not start with a header") }
                if let last = b.entries.last { maxIndex = max(maxIndex, last.index) }
            case .snapshotMarker:
                if j == 0 { throw .corrupted(file: path, offset: 0, reason: "segment does not start with a header") }
            }
        }
        return maxIndex
    }

    /// Second phase of recovery, once replay accepted the state: keeps the
    /// torn tail's bytes aside (synced before anything is cut), cuts the tail
    /// (ftruncate + fsync) and deletes an empty last segment. Returns
    /// warnings: a copy that could not be made (a full disk) does not stop
    /// the start, which cutting the tail has never needed space for.
    static func applyRepairs(_ recovered: Recovered, directory: String) throws(WALError) -> [String] {
        var warnings: [String] = []
        if let tail = recovered.tornTail, !recovered.tornBytes.isEmpty {
            do throws(WALError) {
                let kept = try keep(recovered.tornBytes, of: tail, directory: directory)
                warnings.append("kept the \(recovered.tornBytes.count) bytes cut from '\(tail.file)' in '\(kept)'")
            } catch {
                warnings.append("could not keep the torn tail's bytes: \(error)")
            }
        }
        if let tail = recovered.tornTail, tail.file != recovered.emptySegment {
            let fd = try FileIO.openFile(tail.file, O_WRONLY)
            defer { FileIO.closeFile(fd) }
            try FileIO.truncate(fd, to: tail.offset, path: tail.file)
            try FileIO.fullSync(fd, path: tail.file)
        }
        if let path = recovered.emptySegment {
            try FileIO.removeFile(path)
            try FileIO.syncDirectory(directory)
        }
        return warnings
    }

    /// Writes `bytes` to a new file, ``tornCopyPath(_:_:)`` (numbered if
    /// taken: an earlier copy is never overwritten), synced with its directory.
    private static func keep(_ bytes: [UInt8], of tail: DiskStorage.TornTail, directory: String) throws(WALError) -> String {
        let path = tornCopyPath(tail)
        var name = path
        var fd: Int32 = -1
        for n in 0..<100 {
            name = tornCopyPath(tail, n)
            do throws(WALError) {
                fd = try FileIO.openFile(name, O_WRONLY | O_CREAT | O_EXCL)
                break
            } catch let .io(_, _, code) where code == EEXIST {
                continue
            }
        }
        guard fd >= 0 else { throw .io(operation: "open", path: path, errno: EEXIST) }
        defer { FileIO.closeFile(fd) }
        try FileIO.pwriteAll(fd, bytes, at: 0, path: name)
        try FileIO.fullSync(fd, path: name)
        try FileIO.syncDirectory(directory)
        return name
    }

    /// Opens the WAL for appending after ``recover(directory:)`` and
    /// ``applyRepairs(_:directory:)``; creates the first segment (with a header
    /// for `position`) when there is none.
    ///
    /// The last segment is fdatasynced and the directory fsynced before anything
    /// is served: recovery may have accepted records that reached only the page
    /// cache before the process died, and the node must not acknowledge entries
    /// that a later power loss could still erase.
    ///
    /// The bytes after the last point proven synced are first written again
    /// (the same bytes, in place). After an fdatasync that failed with EIO,
    /// Linux may mark the pages it could not write clean; a restart in the
    /// same boot then reads them whole from the page cache, and a plain
    /// fdatasync, finding nothing dirty, would not write them. Writing them
    /// makes them dirty, so the fdatasync either makes them durable or fails.
    static func open(
        directory: String, segmentSize: Int, preallocate: Bool, recovered: Recovered, position: LogPosition
    ) throws(WALError) -> WAL {
        let wal = WAL(
            directory: directory, segmentSize: segmentSize, preallocate: preallocate, segments: recovered.segments, writer: nil)
        if let last = recovered.segments.last {
            let path = FileIO.joined(directory, last.name.fileName)
            let fd = try FileIO.openFile(path, O_WRONLY)
            do {
                try FileIO.pwriteAll(fd, recovered.unprovenTail, at: recovered.unprovenFrom, path: path)
                wal.stats.bytesRewritten += recovered.unprovenTail.count
                try FileIO.dataSync(fd, path: path)
            } catch {
                FileIO.closeFile(fd)
                throw error
            }
            wal.stats.dataSyncs += 1
            wal.writer = SegmentWriter(path: path, name: last.name, fd: fd, offset: recovered.lastSegmentLength)
            try FileIO.syncDirectory(directory)
            wal.stats.directorySyncs += 1
        } else {
            try wal.createSegment(SegmentName(sequence: 0, firstIndex: position.lastIndex &+ 1), position: position)
        }
        return wal
    }

    // MARK: Writing

    /// Throws unless records can be written (not closed, no earlier failure).
    func checkUsable() throws(WALError) { _ = try usableWriter() }

    private func usableWriter() throws(WALError) -> SegmentWriter {
        if let failure { throw .failed(previous: failure.description) }
        guard let writer else { throw .closed }
        return writer
    }

    /// Runs `body`; a failure poisons the WAL.
    private func guarded<T>(_ body: () throws(WALError) -> T) throws(WALError) -> T {
        do {
            return try body()
        } catch {
            if failure == nil { failure = error }
            throw error
        }
    }

    /// Writes one record (no sync). Rolls over first if it would push the current
    /// segment past `segmentSize`; `position` is the state *before* this record,
    /// which is what a new segment's header must carry. `length` is
    /// `record.framedLength()`, which the caller checked before any side effect.
    func append(_ record: WALRecord, length: Int, maxEntryIndex: UInt64, position: LogPosition) throws(WALError) {
        var writer = try usableWriter()
        try guarded { () throws(WALError) in
            // A record larger than a segment still goes alone into a fresh one.
            if writer.offset + length > segmentSize, writer.offset > Self.headerRecordLength {
                try rollover(position: position)
                writer = try usableWriter()
            }
            try writer.append(record)
        }
        stats.recordsWritten += 1
        stats.bytesWritten += length
        if maxEntryIndex > 0, !segments.isEmpty {
            segments[segments.count - 1].maxEntryIndex = max(segments[segments.count - 1].maxEntryIndex, maxEntryIndex)
        }
    }

    /// Size of a framed segment header: a segment holding only that is "empty".
    static let headerRecordLength = WALRecord.segmentHeader(
        SegmentHeader(sequence: 0, firstIndex: 0, snapshotIndex: 0, snapshotTerm: 0, hardState: HardState())
    ).framed().count

    /// Hands buffered records to the kernel without syncing (tests model crashes
    /// at every byte the kernel could have written).
    func flush() throws(WALError) {
        let writer = try usableWriter()
        try guarded { () throws(WALError) in try writer.flush() }
    }

    /// One write and one fdatasync for everything appended since the last sync
    /// (group commit).
    func sync() throws(WALError) {
        let writer = try usableWriter()
        let synced = try guarded { () throws(WALError) in try writer.sync() }
        if synced { stats.dataSyncs += 1 }
    }

    /// Syncs and closes the current segment, then starts the next one. The old
    /// segment's unused preallocated space is cut off first (and that made
    /// durable): only the last segment may end in zeros.
    private func rollover(position: LogPosition) throws(WALError) {
        let old = try usableWriter()
        if try old.sync() { stats.dataSyncs += 1 }
        try FileIO.truncate(old.fd, to: old.offset, path: old.path)
        try FileIO.fullSync(old.fd, path: old.path)
        try createSegment(SegmentName(sequence: old.name.sequence &+ 1, firstIndex: position.lastIndex &+ 1), position: position)
        old.close()
    }

    /// Creates `name` with its header, makes both the file and its directory entry
    /// durable (a purge may delete older segments right after, so the header —
    /// which carries the hard state — must not be lost), and makes it current.
    private func createSegment(_ name: SegmentName, position: LogPosition) throws(WALError) {
        let path = FileIO.joined(directory, name.fileName)
        let fd = try FileIO.openFile(path, O_WRONLY | O_CREAT | O_EXCL)
        if preallocate { FileIO.preallocate(fd, length: segmentSize) }
        let writer = SegmentWriter(path: path, name: name, fd: fd, offset: 0)
        let header = WALRecord.segmentHeader(
            SegmentHeader(
                sequence: name.sequence, firstIndex: name.firstIndex, snapshotIndex: position.snapshotIndex,
                snapshotTerm: position.snapshotTerm, hardState: position.hardState))
        try writer.append(header)
        try writer.sync()
        try FileIO.syncDirectory(directory)
        stats.recordsWritten += 1
        stats.bytesWritten += writer.offset
        stats.dataSyncs += 1
        stats.directorySyncs += 1
        stats.segmentsCreated += 1
        self.writer = writer
        segments.append(Segment(name: name, maxEntryIndex: 0))
    }

    // MARK: Purge

    /// Deletes the oldest segments whose entries all have index `<= index`,
    /// stopping at the first that has a later one; never the current segment.
    /// Returns the deleted paths.
    ///
    /// A removal that fails stops purging for the life of this WAL (a later
    /// one could leave a gap behind an unlink that was not made durable) but
    /// not appending: the log only keeps more segments until a restart
    /// (review finding: it poisoned the WAL, and the member stopped at its
    /// next append for want of deleting an old file).
    @discardableResult
    func purge(upTo index: UInt64) throws(WALError) -> [String] {
        _ = try usableWriter()
        if let purgeFailure { throw purgeFailure }
        var removed: [String] = []
        while segments.count > 1, let first = segments.first, first.maxEntryIndex <= index {
            let path = FileIO.joined(directory, first.name.fileName)
            // One removal durable before the next: POSIX does not promise
            // that a crash keeps unsynced unlinks in order, and a purge that
            // came back with a gap (an old segment, then a missing one) would
            // refuse to open.
            do throws(WALError) {
                try FileIO.removeFile(path)
            } catch {
                purgeFailure = error
                throw error
            }
            segments.removeFirst()
            removed.append(path)
            stats.segmentsPurged += 1
            do throws(WALError) {
                try FileIO.syncDirectory(directory)
            } catch {
                purgeFailure = error
                throw error
            }
            stats.directorySyncs += 1
        }
        return removed
    }

    func close() {
        writer?.close()
        writer = nil
    }
}
