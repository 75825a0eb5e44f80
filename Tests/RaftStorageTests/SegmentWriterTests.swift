import Foundation
import Raft
import Testing
@testable import RaftStorage

/// A switch a test flips to make the injected fdatasync fail.
private final class SyncSwitch {
    var fail = false
    var calls = 0
}

@Suite struct SegmentWriterTests {
    private func makeWriter(_ dir: TempDir, sync: SyncSwitch = SyncSwitch()) throws -> SegmentWriter {
        let name = SegmentName(sequence: 0, firstIndex: 1)
        let path = dir.sub(name.fileName)
        let fd = try FileIO.openFile(path, O_WRONLY | O_CREAT | O_EXCL)
        return SegmentWriter(path: path, name: name, fd: fd, offset: 0) { fd, path throws(WALError) in
            sync.calls += 1
            if sync.fail { throw .io(operation: "fdatasync", path: path, errno: EIO) }
            try FileIO.dataSync(fd, path: path)
        }
    }

    private let header = WALRecord.segmentHeader(
        SegmentHeader(sequence: 0, firstIndex: 1, snapshotIndex: 0, snapshotTerm: 0, hardState: HardState(term: 1)))

    private func batch(_ range: ClosedRange<UInt64>) -> WALRecord {
        .batch(Batch(hardState: HardState(term: 1, vote: 1, commit: range.lowerBound), entries: makeEntries(range, term: 1)))
    }

    /// Closing (or dropping) a writer never hands unsynced records to the kernel:
    /// if the process then died, recovery would replay them from the page cache
    /// although a power loss could still erase them.
    @Test func closeDropsUnsyncedRecords() throws {
        try withTempDir { dir in
            let writer = try makeWriter(dir)
            try writer.append(header)
            try writer.sync()
            let synced = writer.syncedOffset
            #expect(synced == readBytes(writer.path).count && synced > 0)
            try writer.append(batch(1...3))
            #expect(writer.unsyncedBytes > 0)
            writer.close()
            #expect(readBytes(writer.path).count == synced)
        }
    }

    /// Every record carries its own offset and the synced length at the time it
    /// was written; the synced length only advances with a successful fdatasync.
    @Test func recordsCarryOffsetAndSyncedLength() throws {
        try withTempDir { dir in
            let writer = try makeWriter(dir)
            try writer.append(header)
            try writer.sync()
            let o1 = writer.offset
            try writer.append(batch(1...2))
            let o2 = writer.offset
            try writer.append(batch(3...4))
            try writer.sync()
            let o3 = writer.offset
            try writer.append(batch(5...5))
            try writer.sync()
            let bytes = readBytes(writer.path)
            let offsets = try SegmentReader.scan(bytes, path: writer.path, isLast: true).records.map(\.offset)
            #expect(offsets == [0, o1, o2, o3])
            #expect(offsets.map { readU64LE(bytes, at: $0 + 8) } == [0, o1, o2, o3].map(UInt64.init))
            #expect(offsets.map { readU64LE(bytes, at: $0 + 16) } == [0, o1, o1, o3].map(UInt64.init))
        }
    }

    /// A failed fdatasync cuts the file back to what the last good sync covered
    /// (after EIO, Linux may mark the pages clean and serve them later although
    /// they never reached the disk), and the writer refuses all further I/O.
    @Test func failedSyncCutsBackToSyncedOffset() throws {
        try withTempDir { dir in
            let sync = SyncSwitch()
            let writer = try makeWriter(dir, sync: sync)
            try writer.append(header)
            try writer.sync()
            let synced = writer.syncedOffset
            try writer.append(batch(1...3))
            try writer.flush()  // reached the kernel, not the disk
            #expect(readBytes(writer.path).count > synced)
            try writer.append(batch(4...4))
            sync.fail = true
            guard case .io? = walError({ try writer.sync() }) else {
                Issue.record("sync did not report the failure")
                return
            }
            #expect(readBytes(writer.path).count == synced)
            #expect(writer.syncedOffset == synced)
            sync.fail = false
            let calls = sync.calls
            let attempts: [() throws -> Void] = [
                { _ = try writer.sync() }, { try writer.flush() }, { try writer.append(batch(5...5)) },
            ]
            for attempt in attempts {
                guard case .failed? = walError(attempt) else {
                    Issue.record("writer accepted I/O after a failed sync")
                    continue
                }
            }
            #expect(sync.calls == calls)
            writer.close()
            #expect(readBytes(writer.path).count == synced)
        }
    }
}
