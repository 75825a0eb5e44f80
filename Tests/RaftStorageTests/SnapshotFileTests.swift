import Foundation
import Raft
import Testing
@testable import RaftStorage

@Suite struct SnapshotFileTests {
    private let conf = ConfState(voters: [1, 2, 3], learners: [7])

    @Test func encodeDecodeRoundTrip() throws {
        let snap = Snapshot(metadata: SnapshotMetadata(index: 12, term: 3, confState: conf), data: Array(0..<200))
        #expect(try SnapshotFile.decode(try SnapshotFile.encode(snap), path: "x") == snap)
        var bytes = try SnapshotFile.encode(snap)
        bytes[bytes.count - 1] ^= 1
        guard case .corrupted? = walError({ _ = try SnapshotFile.decode(bytes, path: "x") }) else {
            Issue.record("flipped byte not detected")
            return
        }
    }

    /// The streaming write (data produced in chunks, header written last)
    /// makes the same file as the whole write; data shorter or longer than
    /// announced fails and leaves no file behind.
    @Test func streamedWriteMakesTheSameFile() throws {
        try withTempDir { dir in
            let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let metadata = SnapshotMetadata(index: 40, term: 5, confState: conf)
            let name = try SnapshotFile.write(metadata: metadata, dataLength: data.count, directory: dir.path) { sink in
                stride(from: 0, to: data.count, by: 4_096).allSatisfy { sink(Array(data[$0..<min($0 + 4_096, data.count)])) }
            }
            let streamed = try FileIO.readFile(FileIO.joined(dir.path, name.fileName))
            #expect(streamed == (try SnapshotFile.encode(Snapshot(metadata: metadata, data: data))))
            #expect(try SnapshotFile.load(directory: dir.path, name: name) == Snapshot(metadata: metadata, data: data))
            // One chunk larger than a sync slice is still written (and synced) in slices.
            let big = (0..<(SnapshotFile.syncSlice * 3 / 2)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let bigMeta = SnapshotMetadata(index: 50, term: 5, confState: conf)
            let bigName = try SnapshotFile.write(metadata: bigMeta, dataLength: big.count, directory: dir.path) { sink in sink(big) }
            #expect(try SnapshotFile.load(directory: dir.path, name: bigName).data == big)
            try FileManager.default.removeItem(atPath: FileIO.joined(dir.path, bigName.fileName))
            for announced in [data.count + 1, data.count - 1] {
                let other = SnapshotMetadata(index: 41, term: 5, confState: conf)
                guard case .invalidArgument? = walError({
                    try SnapshotFile.write(metadata: other, dataLength: announced, directory: dir.path) { sink in sink(data) }
                }) else {
                    Issue.record("announced \(announced) for \(data.count) bytes not refused")
                    continue
                }
                #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == [name.fileName])
            }
        }
    }

    /// Voter and learner counts beyond the u32 field are refused, not trapped on.
    @Test func oversizedCountsAreRejected() throws {
        let tooMany = Int(UInt32.max) + 1
        for (voters, learners) in [(tooMany, 0), (0, tooMany)] {
            guard case .invalidArgument? = walError({
                _ = try SnapshotFile.bodyLength(voters: voters, learners: learners, dataLength: 0)
            }) else {
                Issue.record("count \(tooMany) not rejected")
                continue
            }
        }
        let snap = Snapshot(metadata: SnapshotMetadata(index: 1, term: 1, confState: conf), data: [1, 2])
        #expect(try SnapshotFile.bodyLength(voters: 3, learners: 1, dataLength: 2) + SnapshotFile.headerLength
            == SnapshotFile.encode(snap).count)
    }

    /// A temp file left by an interrupted save is ignored (and removed).
    @Test func leftoverTempFileIsIgnored() throws {
        try withTempDir { dir in
            var expected: LogState?
            try withStorage(dir.path) { s throws in
                try s.append(hardState: HardState(term: 1, commit: 5), entries: makeEntries(1...8, term: 1))
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 5, term: 1, confState: conf), data: [5]))
                // A reopened log starts after the snapshot; in session the caller compacts.
                try s.compact(upTo: 5)
                expected = try LogState(s)
            }
            let temp = dir.path + "/snap/" + SnapshotFile.Name(term: 1, index: 8).fileName + SnapshotFile.tempSuffix
            writeBytes(temp, [1, 2, 3])
            try withStorage(dir.path) { s throws in
                #expect(try LogState(s) == expected)
                #expect(s.recoveryReport.warnings.contains { $0.contains("temporary") })
            }
            #expect(!FileManager.default.fileExists(atPath: temp))
        }
    }

    /// A snapshot file whose WAL marker never became durable (crash between the
    /// two) is not part of the synced state: recovery discards it.
    @Test func snapshotWithoutMarkerIsDiscarded() throws {
        try withTempDir { dir in
            var expected: LogState?
            try withStorage(dir.path) { s throws in
                try s.append(hardState: HardState(term: 1, commit: 5), entries: makeEntries(1...8, term: 1))
                expected = try LogState(s)
            }
            let orphan = Snapshot(metadata: SnapshotMetadata(index: 6, term: 1, confState: conf), data: [6])
            try SnapshotFile.write(orphan, directory: dir.path + "/snap")
            try withStorage(dir.path) { s throws in
                #expect(try LogState(s) == expected)
                #expect(s.recoveryReport.snapshotIndex == 0)
            }
            #expect(listFiles(dir.path + "/snap").isEmpty)
        }
    }

    /// A corrupt newest snapshot falls back to the older one, with the WAL
    /// bridging the gap, and says so in the recovery report.
    @Test func corruptNewestSnapshotFallsBack() throws {
        try withTempDir { dir in
            var expected: LogState?
            let newest = SnapshotFile.Name(term: 2, index: 20).fileName
            try withStorage(dir.path) { s throws in
                try s.append(hardState: HardState(term: 2, commit: 25), entries: makeEntries(1...30, term: 2))
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 10, term: 2, confState: conf), data: [10]))
                try s.compact(upTo: 10)
                expected = try LogState(s)
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 20, term: 2, confState: conf), data: [20]))
                try s.append(hardState: nil, entries: makeEntries(31...32, term: 2))
                expected?.entries += makeEntries(31...32, term: 2)
                expected?.lastIndex = 32
            }
            var bytes = readBytes(dir.path + "/snap/" + newest)
            bytes[bytes.count - 1] ^= 0xFF
            writeBytes(dir.path + "/snap/" + newest, bytes)
            try withStorage(dir.path) { s throws in
                #expect(s.recoveryReport.snapshotIndex == 10)
                #expect(s.recoveryReport.skippedSnapshots.contains { $0.hasSuffix(newest) })
                #expect(s.recoveryReport.warnings.contains { $0.contains("fell back") })
                #expect(try LogState(s) == expected)
            }
            // Set aside, not counted among the snapshots kept: a later
            // compaction keeps the good one at 10 and the new one.
            #expect(listFiles(dir.path + "/snap").contains(newest + ".damaged"))
            #expect(!listFiles(dir.path + "/snap").contains(newest))
            try withStorage(dir.path) { s throws in
                #expect(s.recoveryReport.snapshotIndex == 10)
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 25, term: 2, confState: conf), data: [25]))
                try s.compact(upTo: 25)
            }
            let kept = listFiles(dir.path + "/snap")
            #expect(kept.contains(SnapshotFile.Name(term: 2, index: 10).fileName), "\(kept)")
            #expect(kept.contains(SnapshotFile.Name(term: 2, index: 25).fileName), "\(kept)")
        }
    }

    /// If the WAL no longer holds the entries needed to bridge from the older
    /// snapshot, recovery refuses with a clear error instead of losing them.
    @Test func corruptNewestSnapshotWithoutBridgeIsRefused() throws {
        try withTempDir { dir in
            let options = DiskStorage.Options(segmentSize: 400)
            try withStorage(dir.path, options: options) { s throws in
                for i in 1...40 {
                    try s.append(hardState: HardState(term: 2, commit: UInt64(i)), entries: makeEntries(UInt64(i)...UInt64(i), term: 2, size: 30))
                }
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 10, term: 2, confState: conf)))
                try s.saveSnapshot(Snapshot(metadata: SnapshotMetadata(index: 35, term: 2, confState: conf)))
                try s.compact(upTo: 35)
            }
            let newest = dir.path + "/snap/" + SnapshotFile.Name(term: 2, index: 35).fileName
            var bytes = readBytes(newest)
            bytes[20] ^= 1
            writeBytes(newest, bytes)
            let error = walError { _ = try DiskStorage.open(directory: dir.path, options: options) }
            guard case let .unrecoverable(reason)? = error else {
                Issue.record("expected .unrecoverable, got \(String(describing: error))")
                return
            }
            #expect(reason.contains("11"))
        }
    }
}
