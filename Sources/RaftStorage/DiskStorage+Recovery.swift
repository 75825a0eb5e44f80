import Raft

extension DiskStorage {
    /// A damaged end of the last segment that recovery cut off.
    public struct TornTail: Sendable, Equatable {
        public var file: String
        /// Where the file was truncated (start of the first incomplete record).
        public var offset: Int
        public var droppedBytes: Int
        public var reason: String
    }

    /// What ``open(directory:options:)`` found and repaired.
    public struct RecoveryReport: Sendable {
        /// True when the directory held no WAL yet.
        public var createdNew = false
        /// Human-readable notes: torn tails cut, leftover temp files removed,
        /// unreadable snapshots skipped, unsynced snapshot files discarded.
        public var warnings: [String] = []
        public var tornTail: TornTail?
        /// Index of the snapshot the state was rebuilt from (0 for none).
        public var snapshotIndex: UInt64 = 0
        /// Snapshot files that failed verification and were skipped for an older one.
        public var skippedSnapshots: [String] = []
        public var segmentsReplayed = 0
        public var recordsReplayed = 0
    }

    // MARK: Opening and recovery

    /// Opens the storage in `directory`, creating it if new and recovering otherwise.
    ///
    /// Recovery runs in two phases. First it only reads: it loads the newest
    /// snapshot that the WAL references and that verifies (falling back to an
    /// older one when the newest is corrupt) and replays every segment. Damage
    /// that a crash cannot explain throws ``WALError/corrupted(file:offset:reason:)``
    /// and leaves every file untouched. Only then does it repair: a torn tail of
    /// the last segment is cut off (ftruncate + fsync, reported in
    /// ``recoveryReport``), files of interrupted saves are deleted, and the last
    /// segment and the directories are synced, so that everything recovery
    /// accepted — possibly records that were written but never synced and
    /// happened to reach the page cache whole — is durable before it is served.
    public static func open(directory: String, options: Options = Options()) throws(WALError) -> DiskStorage {
        guard options.segmentSize >= 4 * WAL.headerRecordLength else {
            throw .invalidArgument("segmentSize \(options.segmentSize) is too small (minimum \(4 * WAL.headerRecordLength))")
        }
        guard options.snapshotsToKeep >= 1 else {
            throw .invalidArgument("snapshotsToKeep must be at least 1, got \(options.snapshotsToKeep)")
        }
        let walDir = FileIO.joined(directory, "wal")
        let snapDir = FileIO.joined(directory, "snap")
        try FileIO.makeDirectories(directory)
        let lockFD = try FileIO.lock(FileIO.joined(directory, "LOCK"))
        do {
            if try FileIO.makeDirectory(walDir) { try FileIO.syncDirectory(directory) }
            if try FileIO.makeDirectory(snapDir) { try FileIO.syncDirectory(directory) }
            var report = RecoveryReport()

            // Phase 1: read and validate; nothing on disk changes.
            let recovered = try WAL.recover(directory: walDir)
            report.warnings += recovered.warnings
            report.tornTail = recovered.tornTail
            let (base, obsoleteSnapshots) = try loadSnapshot(
                directory: snapDir, records: recovered.records, hasWAL: !recovered.segments.isEmpty, report: &report)
            var replay = WALReplay(base: base.metadata)
            for record in recovered.records { try replay.apply(record) }
            let entries = try replay.finish()
            report.snapshotIndex = base.metadata.index
            report.segmentsReplayed = recovered.segments.count
            report.recordsReplayed = replay.recordsApplied
            report.createdNew = recovered.segments.isEmpty

            let cache = MemoryStorage()
            // Only the metadata stays in memory; ``snapshot()`` reads the file.
            if !base.isEmpty { cache.applySnapshot(Snapshot(metadata: base.metadata, data: [])) }
            cache.append(entries)
            cache.setHardState(replay.hardState)

            // Phase 2: the state is valid; repair, then make what was accepted durable.
            report.warnings += try WAL.applyRepairs(recovered, directory: walDir)
            for path in obsoleteSnapshots { try FileIO.removeFile(path) }
            // Files that did not verify are set aside, kept for whoever looks
            // into it: left in place, they counted among the snapshots kept,
            // and a later compaction could delete a good older one instead
            // (review finding).
            for path in report.skippedSnapshots { try FileIO.renameFile(path, path + SnapshotFile.damagedSuffix) }
            let wal = try WAL.open(
                directory: walDir, segmentSize: options.segmentSize, preallocate: options.preallocate, recovered: recovered,
                position: LogPosition(
                    lastIndex: cache.lastIndex, snapshotIndex: base.metadata.index, snapshotTerm: base.metadata.term,
                    hardState: cache.hardState))
            // Also covers the deletions above and directory entries an earlier crash may have left unsynced.
            try FileIO.syncDirectory(snapDir)
            try FileIO.syncDirectory(directory)
            return DiskStorage(
                directory: directory, options: options, cache: cache, wal: wal, lockFD: lockFD, report: report,
                durableSnapshotIndex: base.metadata.index, directorySyncs: 2, recoveredSnapshot: base)
        } catch {
            FileIO.closeFile(lockFD)
            throw error
        }
    }

    /// Picks the snapshot to rebuild from: the newest snapshot file the WAL
    /// references (a marker or a segment header) that verifies. Deletes nothing;
    /// returns the files to delete once recovery succeeded.
    ///
    /// A snapshot file is written and synced before its marker; a file newer than
    /// anything the WAL references was therefore saved by a save that crashed
    /// before its marker was synced: it is not part of the synced state and is
    /// obsolete. Leftover temp files are obsolete too.
    private static func loadSnapshot(
        directory: String, records: [LocatedRecord], hasWAL: Bool, report: inout RecoveryReport
    ) throws(WALError) -> (Snapshot, obsolete: [String]) {
        var obsolete: [String] = []
        var names: [SnapshotFile.Name] = []
        for file in try FileIO.listDirectory(directory) {
            let path = FileIO.joined(directory, file)
            if file.hasSuffix(SnapshotFile.tempSuffix) {
                obsolete.append(path)
                report.warnings.append("removed leftover temporary snapshot file '\(path)' (interrupted save)")
            } else if let name = SnapshotFile.Name(fileName: file) {
                names.append(name)
            } else if file.hasSuffix(SnapshotFile.damagedSuffix) {
                report.warnings.append("a snapshot file that did not verify is kept aside as '\(path)'")
            } else {
                report.warnings.append("ignoring unexpected file '\(path)' in the snapshot directory")
            }
        }
        if !hasWAL {
            guard names.isEmpty else {
                throw .unrecoverable(
                    "'\(directory)' holds snapshot files but the WAL has no segments, so the hard state "
                        + "(term, vote, commit) is lost; restore this member from a peer")
            }
            return (Snapshot(), obsolete)
        }

        var newest: (index: UInt64, term: UInt64) = (0, 0)
        for located in records {
            switch located.record {
            case let .segmentHeader(h) where h.snapshotIndex > newest.index:
                newest = (h.snapshotIndex, h.snapshotTerm)
            case let .snapshotMarker(m) where m.index > newest.index:
                newest = (m.index, m.term)
            case let .batch(b):
                if let m = b.snapshot, m.index > newest.index { newest = (m.index, m.term) }
            default:
                break
            }
        }

        var candidates: [SnapshotFile.Name] = []
        for name in names {
            if name.index > newest.index || (name.index == newest.index && name.term != newest.term) {
                let path = FileIO.joined(directory, name.fileName)
                obsolete.append(path)
                report.warnings.append(
                    "removed snapshot file '\(path)': its save did not complete (no synced WAL marker)")
            } else {
                candidates.append(name)
            }
        }

        candidates.sort { $0.index > $1.index }
        for name in candidates {
            do {
                let snapshot = try SnapshotFile.load(directory: directory, name: name)
                if !report.skippedSnapshots.isEmpty {
                    report.warnings.append(
                        "fell back to snapshot at index \(name.index) because newer snapshot files are unreadable")
                }
                return (snapshot, obsolete)
            } catch {
                let path = FileIO.joined(directory, name.fileName)
                report.skippedSnapshots.append(path)
                report.warnings.append(
                    "skipping unreadable snapshot (set aside as '\(path)\(SnapshotFile.damagedSuffix)'): \(error.description)")
            }
        }
        if newest.index > 0 {
            report.warnings.append(
                "no readable snapshot file for the snapshot at index \(newest.index); rebuilding from the WAL alone")
        }
        return (Snapshot(), obsolete)
    }
}
