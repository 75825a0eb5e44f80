import Raft

/// Durable ``RaftLogStorage``: a segmented write-ahead log plus snapshot files,
/// with a ``MemoryStorage`` caching everything since the snapshot (as etcd keeps
/// a MemoryStorage next to its WAL). Reads are served from the cache; writes go
/// to the WAL first, then to the cache.
///
/// Layout under the data directory:
/// - `wal/<seq:16 hex>-<firstIndex:16 hex>.wal` — segments (see ``WALRecord``);
/// - `snap/<term:16 hex>-<index:16 hex>.snap` — snapshots (see ``SnapshotFile``);
/// - `LOCK` — held with `flock` while open, so two instances never share a directory.
///
/// Driver contract, per `Ready`: ``append(hardState:entries:snapshot:)`` with its
/// hard state, entries and snapshot (one atomic record), then ``sync()`` when the
/// Ready's `mustSync` says so (otherwise ``flush()``) — and only then send
/// `messagesAfterPersist` (they promise the vote, term or entries).
/// Several Readys may be appended before one ``sync()`` (group commit).
/// Snapshots the application takes itself go through ``saveSnapshot(_:)``, and
/// ``compact(upTo:)`` reclaims the space they make unnecessary.
///
/// Not thread-safe: use from one thread at a time (the node loop), like
/// ``RaftLogStorage`` itself.
public final class DiskStorage: RaftLogStorage {
    public struct Options: Sendable {
        /// Roll over to a new segment once the current one would grow past this.
        public var segmentSize: Int
        /// ``compact(upTo:)`` keeps this many newest snapshot files (at least 1).
        public var snapshotsToKeep: Int
        /// Allocate each new segment's full size up front (zeros), as etcd
        /// does: appends then never grow the file, so fdatasync has less to
        /// do. Only the last segment keeps unused zeros; recovery reads them
        /// as the end of the log.
        public var preallocate: Bool

        public init(segmentSize: Int = 64 << 20, snapshotsToKeep: Int = 2, preallocate: Bool = true) {
            self.segmentSize = segmentSize
            self.snapshotsToKeep = snapshotsToKeep
            self.preallocate = preallocate
        }
    }

    /// Counters since ``open(directory:options:)``, to check group commit
    /// (`dataSyncs` grows by one per ``sync()`` that had something to sync).
    public struct Statistics: Sendable, Equatable {
        /// WAL records written, including segment headers and snapshot markers.
        public var recordsWritten = 0
        public var bytesWritten = 0
        /// fdatasync calls on WAL segments (``sync()``, rollover, new segment,
        /// and one at open for the segment recovery resumes).
        public var dataSyncs = 0
        /// fsync calls on the WAL, snapshot or data directory (open syncs all three).
        public var directorySyncs = 0
        public var segmentsCreated = 0
        public var segmentsPurged = 0
        public var snapshotsSaved = 0
        public var snapshotFilesDeleted = 0
        /// Bytes open wrote again in place: the last segment after the last
        /// point proven synced (``WAL/open``).
        public var bytesRewritten = 0

        public init() {}
    }

    public let directory: String
    public let options: Options
    public let recoveryReport: RecoveryReport
    private let walDirectory: String
    private let snapDirectory: String
    private let cache: MemoryStorage
    /// The latest snapshot's data lives in its file, not in `cache`.
    private let readBack: SnapshotReadBack
    /// The snapshot recovery loaded (and verified), handed to the first
    /// ``readSnapshot()`` so that a start reads the file once.
    private var recoveredSnapshot: Snapshot?
    private let wal: WAL
    private var lockFD: Int32
    private var snapshotsSaved = 0
    private var snapshotFilesDeleted = 0
    /// Directory fsyncs outside the WAL (snapshot directory, recovery).
    private var snapshotDirectorySyncs: Int
    /// Index of the newest snapshot whose WAL record is synced. A snapshot that
    /// arrived in an unsynced `Ready` is not yet part of the durable state, so
    /// ``compact(upTo:)`` must not purge on its strength.
    private var durableSnapshotIndex: UInt64

    /// Use ``open(directory:options:)``.
    init(
        directory: String, options: Options, cache: MemoryStorage, wal: WAL, lockFD: Int32, report: RecoveryReport,
        durableSnapshotIndex: UInt64, directorySyncs: Int, recoveredSnapshot: Snapshot? = nil
    ) {
        self.recoveredSnapshot = recoveredSnapshot
        self.directory = directory
        self.options = options
        self.walDirectory = FileIO.joined(directory, "wal")
        self.snapDirectory = FileIO.joined(directory, "snap")
        self.cache = cache
        self.readBack = SnapshotReadBack(directory: FileIO.joined(directory, "snap"))
        self.wal = wal
        self.lockFD = lockFD
        self.recoveryReport = report
        self.durableSnapshotIndex = durableSnapshotIndex
        self.snapshotDirectorySyncs = directorySyncs
    }

    deinit {
        wal.close()
        if lockFD >= 0 { FileIO.closeFile(lockFD) }
    }

    // MARK: Writes

    /// Where the log stands now; the header a new segment would carry.
    private var position: LogPosition {
        let meta = cache.latestSnapshot.metadata
        return LogPosition(
            lastIndex: cache.lastIndex, snapshotIndex: meta.index, snapshotTerm: meta.term, hardState: cache.hardState)
    }

    /// Writes one `Ready`'s snapshot, entries and hard state as a single WAL
    /// record (so a crash keeps all of it or none — the atomic unit the `Ready`
    /// contract asks for) and applies them to the cache in that order. Does not
    /// sync: nothing is durable until ``sync()`` returns.
    ///
    /// - `snapshot` (a snapshot the leader sent): its file is written and made
    ///   durable first (temp file, fsync, rename, directory fsync); the record
    ///   carries only its marker, so until the record is synced a crash discards
    ///   the file again. It is applied as in ``saveSnapshot(_:)``: entries after it
    ///   are kept if the log holds its index and term, otherwise the log is
    ///   replaced. A snapshot not newer than the current one is ignored.
    /// - `entries` must be contiguous and ascending. Entries at or below the
    ///   snapshot index are ignored (they are covered by it); the first remaining
    ///   one may overwrite a suffix (index `<= lastIndex`: everything from it on
    ///   is replaced) but must not leave a gap (index `<= lastIndex + 1`).
    /// - `hardState`, if given, replaces the current one.
    ///
    /// A call with nothing left to write does nothing.
    ///
    /// - Throws: ``WALError/invalidArgument(_:)`` for a gap, non-contiguous
    ///   entries or a record over the 4 GiB limit (nothing written); an I/O error, after which the storage refuses
    ///   further writes (``WALError/failed(previous:)``).
    public func append(hardState: HardState?, entries: [Entry], snapshot: Snapshot? = nil) throws(WALError) {
        for (a, b) in zip(entries, entries.dropFirst()) where b.index != a.index &+ 1 {
            throw .invalidArgument("entries are not contiguous: \(b.index) follows \(a.index)")
        }
        let marker = snapshot.flatMap(marker(for:))
        let snapshotIndex = marker?.index ?? cache.latestSnapshot.metadata.index
        let lastIndex = marker.map { $0.mode == .keepLog ? cache.lastIndex : $0.index } ?? cache.lastIndex
        // Usually nothing is below the snapshot: keep the caller's array as is.
        let kept = (entries.first?.index ?? .max) > snapshotIndex ? entries : Array(entries.drop { $0.index <= snapshotIndex })
        if let first = kept.first, first.index > lastIndex &+ 1 {
            throw .invalidArgument("gap in log: appending entry \(first.index) after last index \(lastIndex)")
        }
        if marker == nil && kept.isEmpty && hardState == nil { return }
        let record = WALRecord.batch(Batch(snapshot: marker, hardState: hardState, entries: kept))
        let length = try record.framedLength()
        try wal.checkUsable()
        if let snapshot, marker != nil {
            try Self.writeSnapshotFile(snapshot, storageDirectory: directory)
            snapshotsSaved += 1
            snapshotDirectorySyncs += 1
        }
        try wal.append(record, length: length, maxEntryIndex: kept.last?.index ?? 0, position: position)
        if let snapshot, let marker { try applyToCache(snapshot, marker) }
        cache.append(kept)
        if let hardState { cache.setHardState(hardState) }
    }

    /// Makes everything appended so far durable with one fdatasync (group commit:
    /// any number of ``append(hardState:entries:)`` calls share it). A no-op when
    /// nothing was written since the last sync.
    ///
    /// - Throws: an I/O error; the storage then refuses further writes, because
    ///   after a failed fdatasync the kernel may have dropped the dirty pages.
    public func sync() throws(WALError) {
        try wal.sync()
        durableSnapshotIndex = cache.latestSnapshot.metadata.index
    }

    /// Hands appended records to the kernel without syncing: they survive the
    /// process dying, not the machine losing power. For what need not be
    /// durable yet (a hard state that only moves the commit index) and for
    /// crash tests.
    public func flush() throws(WALError) {
        try wal.flush()
    }

    /// True when appended records are waiting for ``sync()``.
    public var hasUnsyncedWrites: Bool { wal.hasUnsyncedWrites }

    /// Saves `snapshot` durably and makes it the log's starting point — for a
    /// snapshot the application took of its own state. (A snapshot that arrives in
    /// a `Ready` goes through ``append(hardState:entries:snapshot:)`` so that it is
    /// atomic with that Ready's hard state.)
    ///
    /// Order: the snapshot file is written atomically (temp file, fsync, rename,
    /// directory fsync); then a snapshot marker is appended to the WAL and synced
    /// (this also syncs earlier appends); then the cache is updated. A crash
    /// before the marker is durable leaves the old state (recovery discards the file).
    ///
    /// - If the log holds `metadata.index` with `metadata.term` (the member's own
    ///   snapshot, or a received one that matches), all entries stay cached,
    ///   those below it too, until ``compact(upTo:)`` drops them: the caller keeps
    ///   catch-up entries for slow followers, as etcd does. After a reopen the
    ///   log starts after the snapshot: `firstIndex == index + 1`.
    /// - Otherwise the log is replaced by the snapshot (a follower installing the
    ///   leader's snapshot): `firstIndex == lastIndex + 1 == index + 1`.
    /// - A snapshot not newer than the current one is ignored (nothing written).
    ///
    /// The hard state is not changed.
    public func saveSnapshot(_ snapshot: Snapshot) throws(WALError) {
        guard marker(for: snapshot) != nil else { return }
        try wal.checkUsable()
        try Self.writeSnapshotFile(snapshot, storageDirectory: directory)
        try installSnapshotFile(snapshot)
    }

    /// The first half of ``saveSnapshot(_:)``, for a snapshot taken in the
    /// background: writes and syncs the snapshot file of the storage opened on
    /// `storageDirectory`. Safe on any thread, while the storage is in use: it
    /// touches only that file (a file without a WAL marker is ignored, and
    /// removed, by recovery). Then call ``installSnapshotFile(_:)``.
    public static func writeSnapshotFile(_ snapshot: Snapshot, storageDirectory: String) throws(WALError) {
        try SnapshotFile.write(snapshot, directory: FileIO.joined(storageDirectory, "snap"))
    }

    /// ``writeSnapshotFile(_:storageDirectory:)`` for a state encoded in
    /// chunks (``SnapshotFile``'s streaming write: the encoded state is never
    /// held whole). `produce` must give exactly `dataLength` bytes. Then call
    /// ``installSnapshotFile(_:)`` with the metadata (the data is not needed).
    public static func writeSnapshotFile(
        metadata: SnapshotMetadata, dataLength: Int, storageDirectory: String,
        produce: (_ sink: @escaping ([UInt8]) -> Bool) -> Bool
    ) throws(WALError) {
        try SnapshotFile.write(
            metadata: metadata, dataLength: dataLength, directory: FileIO.joined(storageDirectory, "snap"), produce: produce)
    }

    /// The second half of ``saveSnapshot(_:)``: makes a snapshot whose file
    /// ``writeSnapshotFile(_:storageDirectory:)`` wrote the current one (WAL
    /// marker, sync, cache). A snapshot that is no longer newer than the
    /// current one (another was installed meanwhile) is dropped with its
    /// file. Returns whether it became the current one.
    @discardableResult
    public func installSnapshotFile(_ snapshot: Snapshot) throws(WALError) -> Bool {
        guard let marker = marker(for: snapshot) else {
            let name = SnapshotFile.Name(term: snapshot.metadata.term, index: snapshot.metadata.index)
            if name.index != cache.latestSnapshot.metadata.index {
                try? FileIO.removeFile(FileIO.joined(snapDirectory, name.fileName))
            }
            return false
        }
        let record = WALRecord.snapshotMarker(marker)
        let length = try record.framedLength()
        try wal.checkUsable()
        snapshotsSaved += 1
        snapshotDirectorySyncs += 1
        try wal.append(record, length: length, maxEntryIndex: 0, position: position)
        try wal.sync()
        // The entries below stay cached until compact(upTo:), so a follower a
        // little behind gets entries, not the whole snapshot (etcd keeps
        // 5,000: SnapshotCatchUpEntries). Recovery starts after the snapshot.
        try applyToCache(snapshot, marker, compactCache: false)
        durableSnapshotIndex = marker.index
        return true
    }

    /// How `snapshot` applies to the log now; nil when it is not newer than the current one.
    private func marker(for snapshot: Snapshot) -> SnapshotMarker? {
        let meta = snapshot.metadata
        guard meta.index > cache.latestSnapshot.metadata.index else { return nil }
        let matches = meta.index <= cache.lastIndex && (try? cache.term(at: meta.index)) == meta.term
        return SnapshotMarker(index: meta.index, term: meta.term, mode: matches ? .keepLog : .replaceLog)
    }

    private func applyToCache(_ snapshot: Snapshot, _ marker: SnapshotMarker, compactCache: Bool = true) throws(WALError) {
        readBack.forget()
        recoveredSnapshot = nil
        switch marker.mode {
        case .keepLog:
            do {
                try cache.createSnapshot(index: marker.index, confState: snapshot.metadata.confState, data: [])
                if compactCache { try cache.compact(upTo: marker.index) }
            } catch {
                // Unreachable: `marker(for:)` checked the index is in the log.
                throw .unrecoverable("cache rejected snapshot at index \(marker.index): \(error)")
            }
        case .replaceLog:
            cache.applySnapshot(Snapshot(metadata: snapshot.metadata, data: []))
        }
    }

    /// Reclaims disk space up to `index` (which must be `<=` the saved snapshot's
    /// index): drops cached entries `<= index` (``saveSnapshot(_:)`` keeps
    /// them, so a caller chooses how many to keep for slow followers), deletes the oldest WAL segments
    /// whose entries all have index `<= index` (never the segment being written,
    /// and always a prefix, so the sequence stays gapless; the next segment's
    /// header carries the hard state), and deletes snapshot files beyond the
    /// newest ``Options/snapshotsToKeep``. Returns the deleted paths.
    ///
    /// When the snapshot arrived in an ``append(hardState:entries:snapshot:)``
    /// that is not synced yet, this syncs first: deleting what it replaces before
    /// its record is durable would lose synced state in a crash.
    @discardableResult
    public func compact(upTo index: UInt64) throws(WALError) -> [String] {
        let snapIndex = cache.latestSnapshot.metadata.index
        guard index <= snapIndex else {
            throw .invalidArgument("cannot compact up to \(index): the saved snapshot is at index \(snapIndex)")
        }
        if snapIndex > durableSnapshotIndex { try sync() }
        do {
            try cache.compact(upTo: index)
        } catch {
            throw .invalidArgument("cache cannot compact up to \(index): \(error)")
        }
        var removed = try wal.purge(upTo: index)

        var names: [SnapshotFile.Name] = []
        for file in try FileIO.listDirectory(snapDirectory) {
            if let name = SnapshotFile.Name(fileName: file) { names.append(name) }
        }
        names.sort { $0.index > $1.index }
        let stale = names.dropFirst(options.snapshotsToKeep).filter { $0.index < snapIndex }
        for name in stale {
            let path = FileIO.joined(snapDirectory, name.fileName)
            try FileIO.removeFile(path)
            removed.append(path)
            snapshotFilesDeleted += 1
        }
        if !stale.isEmpty {
            try FileIO.syncDirectory(snapDirectory)
            snapshotDirectorySyncs += 1
        }
        return removed
    }

    /// Syncs pending appends, then closes the files and releases the directory
    /// lock. Later calls throw ``WALError/closed``; reads keep answering from the cache.
    public func close() throws(WALError) {
        readBack.waitForReads()
        readBack.forget()
        recoveredSnapshot = nil
        defer {
            wal.close()
            if lockFD >= 0 {
                FileIO.closeFile(lockFD)
                lockFD = -1
            }
        }
        if wal.failure == nil && wal.currentSegmentName != nil { try wal.sync() }
    }

    // MARK: Introspection

    public var statistics: Statistics {
        var s = wal.stats
        s.snapshotsSaved = snapshotsSaved
        s.snapshotFilesDeleted = snapshotFilesDeleted
        s.directorySyncs += snapshotDirectorySyncs
        return s
    }

    /// The latest hard state appended (durable once ``sync()`` returns).
    public var hardState: HardState { cache.hardState }

    /// Paths of the WAL segments, oldest first; the last is being written.
    public var segmentPaths: [String] { wal.segments.map { FileIO.joined(walDirectory, $0.name.fileName) } }

    // MARK: RaftLogStorage (served from the cache)

    public func initialState() throws(StorageError) -> (hardState: HardState, confState: ConfState) {
        try cache.initialState()
    }

    public func entries(_ range: Range<UInt64>, maxBytes: Int) throws(StorageError) -> [Entry] {
        try cache.entries(range, maxBytes: maxBytes)
    }

    public func term(at index: UInt64) throws(StorageError) -> UInt64 {
        try cache.term(at: index)
    }

    public var firstIndex: UInt64 { cache.firstIndex }
    public var lastIndex: UInt64 { cache.lastIndex }

    /// The latest snapshot for Raft to send to a follower. Only its metadata
    /// stays in memory: the data (the whole state machine, hundreds of
    /// megabytes for a large store) is read back from its file in the
    /// background, and until it has been this throws
    /// ``StorageError/snapshotTemporarilyUnavailable`` (Raft tries again
    /// later). See ``SnapshotReadBack``. Use ``readSnapshot()`` to wait for it.
    ///
    /// - Throws: also ``StorageError/io(_:)`` when the file could not be read.
    public func snapshot() throws(StorageError) -> Snapshot {
        let latest = try cache.snapshot()
        guard !latest.isEmpty else { return latest }
        return try readBack.snapshot(named: SnapshotFile.Name(term: latest.metadata.term, index: latest.metadata.index))
    }

    /// The latest snapshot, read from its file now (an empty snapshot if there
    /// is none): for restoring the state machine when the member starts.
    public func readSnapshot() throws(WALError) -> Snapshot {
        let latest = cache.latestSnapshot
        guard !latest.isEmpty else { return latest }
        if let recovered = recoveredSnapshot.take(), recovered.metadata == latest.metadata { return recovered }
        return try SnapshotFile.load(
            directory: snapDirectory, name: SnapshotFile.Name(term: latest.metadata.term, index: latest.metadata.index))
    }

    /// Why reading the latest snapshot back for a follower last failed, if it
    /// did (a damaged or missing snapshot file; see ``snapshot()``).
    public var snapshotReadFailure: String? { readBack.lastFailure }

    /// Only the latest snapshot's metadata (no file read).
    public var snapshotMetadata: SnapshotMetadata { cache.latestSnapshot.metadata }
}
