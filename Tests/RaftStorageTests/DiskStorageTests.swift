import Foundation
import Raft
import Testing
@testable import RaftStorage

private func result<T>(_ body: () throws(StorageError) -> T) -> Result<T, StorageError> {
    do { return .success(try body()) } catch { return .failure(error) }
}

/// Every `RaftLogStorage` read must give the same answer (value or error) on both.
private func expectSameReads(_ disk: DiskStorage, _ mem: MemoryStorage, sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(try LogState(disk) == LogState(mem), sourceLocation: sourceLocation)
    let hi = max(disk.lastIndex, mem.lastIndex) + 2
    for i in 0...hi {
        #expect(result { () throws(StorageError) in try disk.term(at: i) } == result { () throws(StorageError) in try mem.term(at: i) },
                "term(at: \(i))", sourceLocation: sourceLocation)
    }
    for lo in 0...hi {
        for up in lo...hi {
            for maxBytes in [0, 30, 100, Int.max] {
                let d = result { () throws(StorageError) in try disk.entries(lo..<up, maxBytes: maxBytes) }
                let m = result { () throws(StorageError) in try mem.entries(lo..<up, maxBytes: maxBytes) }
                #expect(d == m, "entries(\(lo)..<\(up), maxBytes: \(maxBytes))", sourceLocation: sourceLocation)
            }
        }
    }
}

@Suite struct DiskStorageTests {
    /// Appends, overwrites, a leader-style snapshot and compaction: the disk
    /// storage answers every read like MemoryStorage given the same operations,
    /// before and after close + reopen.
    @Test func behavesLikeMemoryStorageAcrossReopen() throws {
        try withTempDir { dir in
            let mem = MemoryStorage()
            let conf = ConfState(voters: [1, 2, 3], learners: [4])
            func both(_ hs: HardState?, _ ents: [Entry], _ disk: DiskStorage) throws {
                try disk.append(hardState: hs, entries: ents)
                if let hs { mem.setHardState(hs) }
                mem.append(ents)
            }
            try withStorage(dir.path) { disk throws in
                #expect(disk.recoveryReport.createdNew)
                try expectSameReads(disk, mem)
                try both(HardState(term: 1, vote: 1, commit: 0), makeEntries(1...5, term: 1), disk)
                try both(nil, makeEntries(6...8, term: 1), disk)
                try expectSameReads(disk, mem)
                try both(HardState(term: 2, vote: 0, commit: 3), makeEntries(4...6, term: 2, salt: 9), disk)
                try both(HardState(term: 2, vote: 0, commit: 6), [], disk)
                try disk.sync()
                try expectSameReads(disk, mem)

                let snap = Snapshot(metadata: SnapshotMetadata(index: 5, term: 2, confState: conf), data: [1, 2, 3])
                try disk.saveSnapshot(snap)
                // Saving keeps the entries below the snapshot (catch-up entries)...
                try mem.createSnapshot(index: 5, confState: conf, data: [1, 2, 3])
                try expectSameReads(disk, mem)

                try both(nil, makeEntries(7...10, term: 2), disk)
                // ...until the caller compacts.
                try disk.compact(upTo: 5)
                try mem.compact(upTo: 5)
                try disk.sync()
                try expectSameReads(disk, mem)
            }
            try withStorage(dir.path) { disk throws in
                #expect(!disk.recoveryReport.createdNew)
                #expect(disk.recoveryReport.warnings.isEmpty, "\(disk.recoveryReport.warnings)")
                #expect(disk.recoveryReport.snapshotIndex == 5)
                try expectSameReads(disk, mem)
                // And it keeps working after recovery.
                try both(HardState(term: 3, vote: 2, commit: 9), makeEntries(9...12, term: 3), disk)
            }
            try withStorage(dir.path) { disk throws in try expectSameReads(disk, mem) }
        }
    }

    /// Conflicting entries written later replace the old suffix, also on replay.
    @Test func suffixOverwriteSurvivesReopen() throws {
        try withTempDir { dir in
            try withStorage(dir.path) { s throws in
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 2), entries: makeEntries(1...10, term: 1))
                try s.append(hardState: HardState(term: 2, vote: 2, commit: 2), entries: makeEntries(4...6, term: 2))
                try s.append(hardState: nil, entries: makeEntries(6...7, term: 3))
            }
            try withStorage(dir.path) { s throws in
                #expect(s.lastIndex == 7)
                let terms = try s.entries(1..<8, maxBytes: .max).map(\.term)
                #expect(terms == [1, 1, 1, 2, 2, 3, 3])
                #expect(s.hardState == HardState(term: 2, vote: 2, commit: 2))
                #expect(try s.entries(4..<5, maxBytes: .max) == makeEntries(4...4, term: 2))
            }
        }
    }

    /// A follower installing a leader snapshot that does not match its log
    /// replaces the log; one that matches keeps the entries after it.
    @Test func snapshotReplaceAndKeepModesSurviveReopen() throws {
        try withTempDir { dir in
            let conf = ConfState(voters: [1, 2, 3])
            let mem = MemoryStorage()
            try withStorage(dir.path) { s throws in
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 3), entries: makeEntries(1...30, term: 1))
                mem.setHardState(HardState(term: 1, vote: 1, commit: 3))
                mem.append(makeEntries(1...30, term: 1))
                // Leader's snapshot at 20 with term 3: conflicts with our term-1 entry 20.
                let snap = Snapshot(metadata: SnapshotMetadata(index: 20, term: 3, confState: conf), data: [7])
                try s.saveSnapshot(snap)
                mem.applySnapshot(snap)
                #expect(s.firstIndex == 21 && s.lastIndex == 20)
                try s.append(hardState: HardState(term: 3, vote: 0, commit: 20), entries: makeEntries(21...25, term: 3))
                mem.setHardState(HardState(term: 3, vote: 0, commit: 20))
                mem.append(makeEntries(21...25, term: 3))
                // Matching snapshot at 23: keep 24...25.
                let snap2 = Snapshot(metadata: SnapshotMetadata(index: 23, term: 3, confState: conf), data: [8])
                try s.saveSnapshot(snap2)
                try mem.createSnapshot(index: 23, confState: conf, data: [8])
                // An older snapshot is ignored.
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 22, term: 3, confState: conf)))
                // Entries 21...22 stay cached until compacted.
                #expect(try LogState(s) == LogState(mem))
                #expect(s.firstIndex == 21)
            }
            // Reopened, the log starts after the snapshot.
            try mem.compact(upTo: 23)
            try withStorage(dir.path) { s throws in
                #expect(try LogState(s) == LogState(mem))
                #expect(s.firstIndex == 24 && s.lastIndex == 25)
                #expect(try s.readSnapshot().data == [8])
            }
        }
    }

    /// The snapshot's data is not kept in memory: Raft's `snapshot()` reads it
    /// back from the file in the background, answering "temporarily
    /// unavailable" until it has, and hands the copy out once; a damaged file
    /// is reported once as an I/O error and not read again at once.
    @Test func snapshotDataIsReadBackFromItsFileInTheBackground() throws {
        try withTempDir { dir in
            try withStorage(dir.path) { s throws in
                let conf = ConfState(voters: [1])
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 10), entries: makeEntries(1...10, term: 1))
                try s.sync()
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 5, term: 1, confState: conf), data: [5, 5]))
                #expect(throws: StorageError.snapshotTemporarilyUnavailable) { try s.snapshot() }
                #expect(s.snapshotMetadata.index == 5)
                var read: Snapshot?
                for _ in 0..<500 where read == nil {
                    read = try? s.snapshot()
                    if read == nil { Thread.sleep(forTimeInterval: 0.01) }
                }
                #expect(read?.data == [5, 5])
                // Handed out once: the next send reads the file again.
                #expect(throws: StorageError.snapshotTemporarilyUnavailable) { try s.snapshot() }
                // A newer snapshot: the old copy is dropped, the new one read.
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 8, term: 1, confState: conf), data: [8]))
                #expect(throws: StorageError.snapshotTemporarilyUnavailable) { try s.snapshot() }
                #expect(try s.readSnapshot().data == [8])
                // A damaged file: the background read reports it as an I/O error.
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 9, term: 1, confState: conf), data: [9]))
                let path = dir.path + "/snap/" + SnapshotFile.Name(term: 1, index: 9).fileName
                var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
                bytes[bytes.count - 1] ^= 0xFF
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                var outcome: StorageError = .snapshotTemporarilyUnavailable
                for _ in 0..<500 where outcome == .snapshotTemporarilyUnavailable {
                    do throws(StorageError) { _ = try s.snapshot() } catch { outcome = error }
                    if outcome == .snapshotTemporarilyUnavailable { Thread.sleep(forTimeInterval: 0.01) }
                }
                guard case let .io(why) = outcome else {
                    Issue.record("expected an I/O error, got \(outcome)")
                    return
                }
                #expect(why.contains("index 9"))
                #expect(s.snapshotReadFailure?.contains("index 9") == true)
                #expect(throws: StorageError.snapshotTemporarilyUnavailable) { try s.snapshot() }
            }
        }
    }

    /// A Ready carrying a leader's snapshot plus the hard state and entries that
    /// come with it is one record: applied in Ready order, and identical after reopen.
    @Test func readyWithSnapshotIsOneRecord() throws {
        try withTempDir { dir in
            let conf = ConfState(voters: [1, 2])
            let mem = MemoryStorage()
            try withStorage(dir.path) { s throws in
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 2), entries: makeEntries(1...10, term: 1))
                mem.setHardState(HardState(term: 1, vote: 1, commit: 2))
                mem.append(makeEntries(1...10, term: 1))
                let before = s.statistics
                let snap = Snapshot(metadata: SnapshotMetadata(index: 20, term: 3, confState: conf), data: [20])
                let hs = HardState(term: 3, vote: 0, commit: 20)
                // Entries at or below the snapshot are covered by it and skipped.
                try s.append(hardState: hs, entries: makeEntries(19...22, term: 3), snapshot: snap)
                mem.applySnapshot(snap)
                mem.append(makeEntries(21...22, term: 3))
                mem.setHardState(hs)
                #expect(s.statistics.recordsWritten - before.recordsWritten == 1)
                #expect(s.statistics.dataSyncs == before.dataSyncs)  // the record waits for sync()
                #expect(try LogState(s) == LogState(mem))
                try s.sync()
                // A leader-consistent snapshot inside a Ready keeps the log after it.
                let snap2 = Snapshot(metadata: SnapshotMetadata(index: 21, term: 3, confState: conf), data: [21])
                try s.append(hardState: nil, entries: makeEntries(23...23, term: 3), snapshot: snap2)
                try mem.createSnapshot(index: 21, confState: conf, data: [21])
                try mem.compact(upTo: 21)
                mem.append(makeEntries(23...23, term: 3))
                #expect(try LogState(s) == LogState(mem))
            }
            try withStorage(dir.path) { s throws in
                #expect(try LogState(s) == LogState(mem))
                try expectSameReads(s, mem)
            }
        }
    }

    /// Group commit: 100 appends share one fdatasync.
    @Test func oneSyncPerGroup() throws {
        try withTempDir { dir in
            try withStorage(dir.path) { s throws in
                let before = s.statistics
                for i in 1...100 {
                    try s.append(
                        hardState: HardState(term: 1, vote: 1, commit: UInt64(i - 1)),
                        entries: makeEntries(UInt64(i)...UInt64(i), term: 1))
                }
                #expect(s.hasUnsyncedWrites)
                #expect(s.statistics.dataSyncs == before.dataSyncs)
                try s.sync()
                let after = s.statistics
                #expect(after.dataSyncs - before.dataSyncs == 1)
                #expect(after.recordsWritten - before.recordsWritten == 100)
                #expect(!s.hasUnsyncedWrites)
                try s.sync()  // nothing new: no fdatasync
                #expect(s.statistics.dataSyncs == after.dataSyncs)
            }
        }
    }

    @Test func contractViolationsWriteNothing() throws {
        try withTempDir { dir in
            try withStorage(dir.path) { s throws in
                try s.append(hardState: nil, entries: makeEntries(1...3, term: 1))
                let before = s.statistics
                guard case .invalidArgument? = walError({ try s.append(hardState: nil, entries: makeEntries(5...6, term: 1)) }) else {
                    Issue.record("gap not rejected")
                    return
                }
                var broken = makeEntries(4...6, term: 1)
                broken[1].index = 9
                guard case .invalidArgument? = walError({ try s.append(hardState: nil, entries: broken) }) else {
                    Issue.record("non-contiguous entries not rejected")
                    return
                }
                guard case .invalidArgument? = walError({ try s.compact(upTo: 2) }) else {
                    Issue.record("compaction past the snapshot not rejected")
                    return
                }
                #expect(s.statistics == before)
                #expect(s.lastIndex == 3)
                // Nothing to write at all is a no-op.
                try s.append(hardState: nil, entries: [])
                #expect(s.statistics == before)
            }
        }
    }

    @Test func directoryIsLockedWhileOpen() throws {
        try withTempDir { dir in
            let s = try DiskStorage.open(directory: dir.path)
            guard case .locked? = walError({ _ = try DiskStorage.open(directory: dir.path) }) else {
                Issue.record("second open was not refused")
                return
            }
            try s.append(hardState: HardState(term: 1), entries: [])
            try s.close()
            guard case .closed? = walError({ try s.append(hardState: HardState(term: 2), entries: []) }) else {
                Issue.record("append after close was not refused")
                return
            }
            let again = try DiskStorage.open(directory: dir.path)
            #expect(again.hardState == HardState(term: 1))
            try again.close()
        }
    }

    @Test func errorDescriptionsAreActionable() {
        let io = WALError.io(operation: "fdatasync", path: "/data/wal/x.wal", errno: 28)
        #expect(io.description.contains("/data/wal/x.wal"))
        #expect(io.description.contains("No space left on device"))
        let c = WALError.corrupted(file: "/d/wal/a.wal", offset: 123, reason: "checksum mismatch")
        #expect(c.description.contains("/d/wal/a.wal") && c.description.contains("offset 123"))
    }
}

/// A segment that cannot be removed stops purging, not the log: the member
/// appends on (review finding: the failed unlink poisoned the WAL, and the
/// member stopped at its next append).
@Suite struct PurgeFailureTests {
    @Test func aSegmentThatCannotBeRemovedStopsPurgingNotAppending() throws {
        try withTempDir { dir in
            let conf = ConfState(voters: [1])
            try withStorage(dir.path, options: .init(segmentSize: 512)) { s throws in
                // A record per five entries: several segments of 512 bytes.
                for first in stride(from: UInt64(1), through: 36, by: 5) {
                    try s.append(
                        hardState: HardState(term: 1, vote: 1, commit: first + 4),
                        entries: makeEntries(first...(first + 4), term: 1, size: 100))
                }
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 30, term: 1, confState: conf), data: [1]))
                try s.sync()
                // The oldest segment becomes a directory: unlink fails (EISDIR), also as root.
                let wal = dir.sub("wal")
                let oldest = try #require(try FileManager.default.contentsOfDirectory(atPath: wal).filter { $0.hasSuffix(".wal") }.sorted().first)
                try FileManager.default.removeItem(atPath: wal + "/" + oldest)
                try FileManager.default.createDirectory(atPath: wal + "/" + oldest, withIntermediateDirectories: false)
                #expect(walError({ _ = try s.compact(upTo: 30) }) != nil, "the removal fails")
                // Appending goes on, and later compactions are skipped.
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 45), entries: makeEntries(41...45, term: 1))
                try s.sync()
                #expect(walError({ _ = try s.compact(upTo: 30) }) != nil)
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 46), entries: makeEntries(46...46, term: 1))
                try s.sync()
                #expect(s.lastIndex == 46)
            }
        }
    }
}

/// A file whose size no read could fill (a damaged inode, a huge sparse
/// file) is an error, not an allocation that stops the process (review
/// finding).
@Suite struct HugeFileTests {
    @Test func aFileLargerThanMemoryIsRefused() throws {
        try withTempDir { dir in
            let path = dir.sub("huge")
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.truncate(atOffset: 1 << 40)  // sparse: no blocks used
            try handle.close()
            guard case .corrupted(_, _, let reason)? = walError({ _ = try FileIO.readFile(path) }) else {
                Issue.record("read whole")
                return
            }
            #expect(reason.contains("more than this machine's memory"))
        }
    }
}
