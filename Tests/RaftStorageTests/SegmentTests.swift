import Foundation
import Raft
import Testing
@testable import RaftStorage

@Suite struct SegmentTests {
    /// Small segments roll over (old one synced, new one starts with a header)
    /// and reopening replays them all in order.
    @Test func rolloverAndReopen() throws {
        try withTempDir { dir in
            let options = DiskStorage.Options(segmentSize: 512)
            var expected: LogState?
            var paths: [String] = []
            try withStorage(dir.path, options: options) { s throws in
                for i in stride(from: UInt64(1), through: 119, by: 2) {
                    try s.append(hardState: HardState(term: 1, vote: 1, commit: i - 1), entries: makeEntries(i...(i + 1), term: 1, size: 20))
                }
                try s.sync()
                expected = try LogState(s)
                paths = s.segmentPaths
                #expect(s.statistics.segmentsCreated == paths.count)
            }
            #expect(paths.count > 5)
            for path in paths.dropLast() {
                let size = readBytes(path).count
                #expect(size <= 512, "\(path) is \(size) bytes")
                let offsets = try recordOffsets(path)
                #expect(offsets.first == 0 && offsets.count >= 2)
            }
            try withStorage(dir.path, options: options) { s throws in
                #expect(try LogState(s) == expected)
                #expect(s.segmentPaths == paths)
                #expect(s.recoveryReport.segmentsReplayed == paths.count)
            }
            // A record bigger than a segment goes alone into a fresh segment.
            try withStorage(dir.path, options: options) { s throws in
                try s.append(hardState: nil, entries: makeEntries(121...121, term: 1, size: 2000))
                try s.append(hardState: nil, entries: makeEntries(122...122, term: 1, size: 10))
                try s.sync()
                expected = try LogState(s)
            }
            try withStorage(dir.path, options: options) { s throws in #expect(try LogState(s) == expected) }
        }
    }

    /// A new segment is allocated at its full size, in zeros. Reopening reads
    /// the zeros after the last record as the end of the log — no torn tail,
    /// no warning, nothing cut — and appends continue where the records end.
    /// Non-zero bytes in that space are still a torn write.
    @Test func preallocatedSegmentsEndInZeros() throws {
        try withTempDir { dir in
            let options = DiskStorage.Options(segmentSize: 256 << 10)
            var expected: LogState?
            var path = ""
            var end = 0
            try withStorage(dir.path, options: options) { s throws in
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 0), entries: makeEntries(1...20, term: 1, size: 40))
                try s.sync()
                expected = try LogState(s)
                path = try #require(s.segmentPaths.last)
            }
            #expect(readBytes(path).count == 256 << 10)
            end = lastRecordEnd(path)
            #expect(end > 0 && end < 256 << 10)
            try withStorage(dir.path, options: options) { s throws in
                #expect(try LogState(s) == expected)
                #expect(s.recoveryReport.tornTail == nil)
                #expect(s.recoveryReport.warnings.isEmpty)
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 20), entries: makeEntries(21...30, term: 1, size: 40))
                try s.sync()
                expected = try LogState(s)
            }
            #expect(readBytes(path).count == 256 << 10)
            try withStorage(dir.path, options: options) { s throws in
                #expect(try LogState(s) == expected)
                #expect(s.recoveryReport.warnings.isEmpty)
            }
            // A write torn inside the allocated space: cut, with a warning.
            end = lastRecordEnd(path)
            var bytes = readBytes(path)
            for i in end..<(end + 30) { bytes[i] = 0xAB }
            writeBytes(path, bytes)
            try withStorage(dir.path, options: options) { s throws in
                #expect(try LogState(s) == expected)
                #expect(s.recoveryReport.tornTail?.offset == end)
            }
        }
    }

    /// After a snapshot, compaction deletes the segments it covers (never the
    /// current one) and old snapshot files; the hard state, last written only in
    /// a purged segment, survives through the segment headers.
    @Test func purgeAfterSnapshotKeepsHardState() throws {
        try withTempDir { dir in
            let options = DiskStorage.Options(segmentSize: 512, snapshotsToKeep: 2)
            let conf = ConfState(voters: [1, 2, 3])
            let hardState = HardState(term: 4, vote: 2, commit: 90)
            var expected: LogState?
            try withStorage(dir.path, options: options) { s throws in
                try s.append(hardState: hardState, entries: makeEntries(1...2, term: 4))
                for i in stride(from: UInt64(3), through: 119, by: 2) {
                    try s.append(hardState: nil, entries: makeEntries(i...(i + 1), term: 4, size: 20))
                }
                for index: UInt64 in [30, 60, 80] {
                    try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: index, term: 4, confState: conf), data: [UInt8(index)]))
                }
                let before = s.segmentPaths
                let removed = try s.compact(upTo: 80)
                let after = s.segmentPaths
                #expect(after.count < before.count)
                #expect(Set(removed).isSuperset(of: Set(before).subtracting(after)))
                #expect(after.last == before.last)
                // Only segments wholly at or below 80 went; the first kept one has entries above 80.
                let firstKept = try SegmentReader.scan(readBytes(after[0]), path: after[0], isLast: false)
                let maxIndex = firstKept.records.compactMap { r -> UInt64? in
                    if case let .batch(b) = r.record { return b.entries.last?.index }
                    return nil
                }.max() ?? 0
                #expect(maxIndex > 80)
                #expect(listFiles(dir.path + "/snap").count == 2)
                #expect(s.firstIndex == 81)
                expected = try LogState(s)
            }
            try withStorage(dir.path, options: options) { s throws in
                #expect(try LogState(s) == expected)
                #expect(s.hardState == hardState)
                try s.append(hardState: nil, entries: makeEntries(121...125, term: 4))
                // Snapshot everything: all but the current segment can go.
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 125, term: 4, confState: conf), data: [9]))
                try s.compact(upTo: 125)
                #expect(s.segmentPaths.count == 1)
                expected = try LogState(s)
            }
            try withStorage(dir.path, options: options) { s throws in
                #expect(try LogState(s) == expected)
                #expect(s.hardState == hardState)
                #expect(s.firstIndex == 126 && s.lastIndex == 125)
            }
        }
    }
}

/// Where the last record of a segment (which may end in preallocated zeros) ends.
func lastRecordEnd(_ path: String) -> Int {
    (try? SegmentReader.scan(readBytes(path), path: path, isLast: true).validLength) ?? 0
}
