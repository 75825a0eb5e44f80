import Foundation
import Raft
import Testing
@testable import RaftStorage

/// Every file under `root` (relative path → contents).
private func treeContents(_ root: String) -> [String: [UInt8]] {
    var out: [String: [UInt8]] = [:]
    let enumerator = FileManager.default.enumerator(atPath: root)
    while let relative = enumerator?.nextObject() as? String {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: root + "/" + relative, isDirectory: &isDirectory), !isDirectory.boolValue {
            out[relative] = readBytes(root + "/" + relative)
        }
    }
    return out
}

@Suite struct DurabilityTests {
    /// The process died after records reached the kernel but before fdatasync;
    /// the OS survived, so recovery reads them from the page cache. Open must
    /// make them durable (fdatasync of the last segment, fsync of the
    /// directories) before serving them, and later records must treat the
    /// recovered length as synced.
    @Test func openSyncsWhatRecoveryAccepted() throws {
        try withTempDir { dir in
            let source = dir.sub("source")
            let crash = dir.sub("crash")
            let s = try DiskStorage.open(directory: source)
            try s.append(hardState: HardState(term: 1, vote: 1, commit: 1), entries: makeEntries(1...3, term: 1))
            try s.sync()
            try s.append(hardState: HardState(term: 1, vote: 1, commit: 3), entries: makeEntries(4...5, term: 1))
            try s.flush()  // in the page cache, never synced
            let expected = try LogState(s)
            copyDataDir(from: source, to: crash)  // the process dies here
            try s.close()

            let segment = try #require(listFiles(crash + "/wal").first)
            let recovered = lastRecordEnd(crash + "/wal/" + segment)
            try withStorage(crash) { r throws in
                #expect(try LogState(r) == expected)
                #expect(r.statistics.dataSyncs == 1)
                #expect(r.statistics.directorySyncs == 3)  // wal/, snap/ and the data directory
                try r.append(hardState: nil, entries: makeEntries(6...6, term: 1))
                try r.sync()
            }
            let bytes = readBytes(crash + "/wal/" + segment)
            #expect(readU64LE(bytes, at: recovered + 8) == UInt64(recovered))  // its own offset
            #expect(readU64LE(bytes, at: recovered + 16) == UInt64(recovered))  // synced through
        }
    }

    /// Open writes again, in place, the bytes after the last point a record
    /// proves synced before its fdatasync: after an fdatasync EIO, Linux may
    /// have marked those pages clean without writing them, and a restart in
    /// the same boot reads them from the page cache, where a bare fdatasync
    /// would find nothing to write (fsyncgate). Here: exactly the unsynced
    /// group, and the file's bytes unchanged by it.
    @Test func openRewritesWhatNoSyncProved() throws {
        try withTempDir { dir in
            let source = dir.sub("source")
            let crash = dir.sub("crash")
            let s = try DiskStorage.open(directory: source)
            try s.append(hardState: HardState(term: 1, vote: 1, commit: 1), entries: makeEntries(1...3, term: 1))
            try s.sync()
            let segment = try #require(listFiles(source + "/wal").first)
            let synced = lastRecordEnd(source + "/wal/" + segment)
            try s.append(hardState: HardState(term: 1, vote: 1, commit: 3), entries: makeEntries(4...5, term: 1))
            try s.append(hardState: HardState(term: 1, vote: 1, commit: 4), entries: makeEntries(6...6, term: 1))
            try s.flush()  // in the page cache; its sync "failed"
            copyDataDir(from: source, to: crash)
            try s.close()

            let before = readBytes(crash + "/wal/" + segment)
            let end = lastRecordEnd(crash + "/wal/" + segment)
            try withStorage(crash) { r throws in
                #expect(r.statistics.bytesRewritten == end - synced)
                #expect(r.lastIndex == 6)
            }
            #expect(readBytes(crash + "/wal/" + segment) == before)
            // Reopened after a clean close: only the last synced group again.
            try withStorage(crash) { r throws in
                #expect(r.statistics.bytesRewritten > 0)
                #expect(r.statistics.bytesRewritten <= end - synced)
            }
        }
    }

    /// Dropping a storage without close() hands nothing unsynced to the kernel.
    @Test func droppedStorageDoesNotFlushUnsyncedRecords() throws {
        try withTempDir { dir in
            var storage: DiskStorage? = try DiskStorage.open(directory: dir.path)
            let segment = try #require(storage?.segmentPaths.first)
            try storage?.append(hardState: HardState(term: 1, vote: 1, commit: 0), entries: makeEntries(1...3, term: 1))
            try storage?.sync()
            let synced = lastRecordEnd(segment)
            let expected = try LogState(try #require(storage))
            try storage?.append(hardState: HardState(term: 1, vote: 1, commit: 3), entries: makeEntries(4...5, term: 1))
            #expect(storage?.hasUnsyncedWrites == true)
            storage = nil  // deinit: the buffered record is dropped, not written
            #expect(lastRecordEnd(segment) == synced)
            try withStorage(dir.path) { r throws in #expect(try LogState(r) == expected) }
        }
    }

    /// A snapshot that arrived in a Ready not yet synced is not durable:
    /// compacting on its strength must sync first, or a crash right after the
    /// purge would lose synced state.
    @Test func compactSyncsSnapshotFromUnsyncedReady() throws {
        try withTempDir { dir in
            let source = dir.sub("source")
            let crash = dir.sub("crash")
            let options = DiskStorage.Options(segmentSize: 512, snapshotsToKeep: 1)
            let conf = ConfState(voters: [1, 2, 3])
            let s = try DiskStorage.open(directory: source, options: options)
            for i: UInt64 in 1...40 {
                try s.append(hardState: HardState(term: 1, vote: 1, commit: i - 1), entries: makeEntries(i...i, term: 1, size: 30))
            }
            try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 10, term: 1, confState: conf), data: [10]))
            try s.sync()
            // The leader's snapshot matches the log: a Ready carrying it, not synced yet.
            try s.append(
                hardState: HardState(term: 1, vote: 1, commit: 40), entries: [],
                snapshot: Snapshot(metadata: SnapshotMetadata(index: 30, term: 1, confState: conf), data: [30]))
            #expect(s.hasUnsyncedWrites)
            let removed = try s.compact(upTo: 30)
            #expect(removed.contains { $0.hasSuffix(".wal") })
            #expect(removed.contains { $0.hasSuffix(SnapshotFile.Name(term: 1, index: 10).fileName) })
            #expect(!s.hasUnsyncedWrites)
            let expected = try LogState(s)
            copyDataDir(from: source, to: crash)  // crash right after compacting
            try s.close()
            try withStorage(crash, options: options) { r throws in
                #expect(try LogState(r) == expected)
                #expect(r.recoveryReport.snapshotIndex == 30)
            }
        }
    }

    /// Recovery validates everything before it repairs anything: a WAL that is
    /// refused leaves the directory byte for byte as it was, even when it also
    /// has a torn tail, a leftover temp file and an orphan snapshot file.
    @Test func refusedOpenLeavesEveryFileUntouched() throws {
        try withTempDir { dir in
            let conf = ConfState(voters: [1])
            // Records are crafted at the end of the file: no preallocated zeros.
            try withStorage(dir.path, options: .init(preallocate: false)) { s throws in
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 5), entries: makeEntries(1...5, term: 1))
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 3, term: 1, confState: conf), data: [3]))
                try s.append(hardState: nil, entries: makeEntries(6...8, term: 1))
            }
            let snapDir = dir.path + "/snap"
            try SnapshotFile.write(Snapshot(metadata: SnapshotMetadata(index: 7, term: 1, confState: conf)), directory: snapDir)
            writeBytes(snapDir + "/" + SnapshotFile.Name(term: 1, index: 8).fileName + SnapshotFile.tempSuffix, [1, 2, 3])
            // A checksummed record that replay rejects (entry 100 after a log ending at 8), then a torn write.
            let segment = dir.path + "/wal/" + (try #require(listFiles(dir.path + "/wal").last))
            var bytes = readBytes(segment)
            let gap = WALRecord.batch(Batch(hardState: nil, entries: makeEntries(100...101, term: 1)))
            let synced = bytes.count
            bytes += gap.framed(offset: bytes.count, syncedThrough: synced)
            bytes += gap.framed(offset: bytes.count, syncedThrough: synced).prefix(30)
            writeBytes(segment, bytes)

            let before = treeContents(dir.path)
            #expect(before.count == 5)  // segment, 2 snapshots, temp file, LOCK
            let error = walError { _ = try DiskStorage.open(directory: dir.path) }
            guard case let .corrupted(_, _, reason)? = error else {
                Issue.record("expected .corrupted, got \(String(describing: error))")
                return
            }
            #expect(reason.contains("100"))
            #expect(treeContents(dir.path) == before)
        }
    }
}
