import Foundation
import Raft
import Testing
@testable import RaftStorage

/// Offsets of the records in a segment file (it must be intact).
func recordOffsets(_ path: String) throws -> [Int] {
    try SegmentReader.scan(readBytes(path), path: path, isLast: false).records.map(\.offset)
}

/// A history of batches written to one storage, with the state after each.
struct History {
    /// `states[k]` is the state after `k` batches (`states[0]` before any).
    var states: [LogState] = []
    /// Total bytes in all WAL segments after `k` batches.
    var boundaries: [Int] = []
    /// Batches made durable by a sync, in order.
    var syncedBatchCounts: [Int] = []
    /// `(sequence-ordered file name, final bytes)`.
    var files: [(name: String, bytes: [UInt8])] = []
    /// Snapshot files at the end (present in crash images even before the record
    /// that refers to it: a snapshot file is durable before that record is written).
    var snapFiles: [(name: String, bytes: [UInt8])] = []
}

func totalWALBytes(_ s: DiskStorage) -> Int {
    s.segmentPaths.reduce(0) { $0 + readBytes($1).count }
}

/// Writes `batches` batches (random sizes, some overwriting a suffix, most with
/// a hard state), syncing after every `syncEvery`.
func recordHistory(dir: String, batches: Int, syncEvery: Int, segmentSize: Int, seed: UInt64) throws -> History {
    var rng = SeededRandom(seed: seed)
    var h = History()
    let s = try DiskStorage.open(directory: dir, options: .init(segmentSize: segmentSize, preallocate: false))
    h.states.append(try LogState(s))
    h.boundaries.append(totalWALBytes(s))
    var term: UInt64 = 1
    for k in 1...batches {
        if k == batches / 2 {
            // A follower installing a leader's snapshot beyond its log, in one Ready.
            term += 1
            let at = s.lastIndex + 5
            let snap = Snapshot(metadata: SnapshotMetadata(index: at, term: term, confState: ConfState(voters: [1, 2])), data: [9])
            try s.append(hardState: HardState(term: term, vote: 0, commit: at), entries: makeEntries((at + 1)...(at + 2), term: term), snapshot: snap)
            try s.flush()
            h.states.append(try LogState(s))
            h.boundaries.append(totalWALBytes(s))
            continue
        }
        let overwrite = s.lastIndex > s.firstIndex + 2 && Int.random(in: 0..<5, using: &rng) == 0
        if overwrite { term += 1 }
        let start = overwrite ? s.lastIndex - UInt64.random(in: 0...2, using: &rng) : s.lastIndex + 1
        let count = UInt64.random(in: 0...3, using: &rng)
        let entries = count == 0 ? [] : makeEntries(start...(start + count - 1), term: term, size: Int.random(in: 0...40, using: &rng))
        let hs = Bool.random(using: &rng) || entries.isEmpty
            ? HardState(term: term, vote: UInt64(k % 3), commit: max(s.lastIndex, 1) - 1) : nil
        try s.append(hardState: hs, entries: entries)
        try s.flush()  // the kernel may hold any prefix of what was handed to it
        h.states.append(try LogState(s))
        h.boundaries.append(totalWALBytes(s))
        if k % syncEvery == 0 {
            try s.sync()
            h.syncedBatchCounts.append(k)
        }
    }
    try s.close()
    h.files = listFiles(dir + "/wal").map { ($0, readBytes(dir + "/wal/" + $0)) }
    h.snapFiles = listFiles(dir + "/snap").map { ($0, readBytes(dir + "/snap/" + $0)) }
    return h
}

/// Writes the crash image "first `prefix` bytes of the WAL, in write order" to `dir`.
/// With `emptyNext`, a crash right after creating the next segment file is modelled.
func writeCrashImage(_ h: History, prefix: Int, to dir: String, emptyNext: Bool = false) {
    try? FileManager.default.createDirectory(atPath: dir + "/wal", withIntermediateDirectories: true)
    try? FileManager.default.createDirectory(atPath: dir + "/snap", withIntermediateDirectories: true)
    // The first segment's header is synced when the storage is created, before
    // any snapshot could be saved; after that, the file may precede its record.
    if prefix >= h.boundaries[0] {
        for f in h.snapFiles { writeBytes(dir + "/snap/" + f.name, f.bytes) }
    }
    var left = prefix
    for (i, file) in h.files.enumerated() {
        if left <= 0 {
            if emptyNext && i > 0 { writeBytes(dir + "/wal/" + file.name, []) }
            break
        }
        let n = min(left, file.bytes.count)
        writeBytes(dir + "/wal/" + file.name, Array(file.bytes[..<n]))
        left -= n
    }
}

@Suite struct RecoveryTests {
    /// Cutting the last segment anywhere inside its last record recovers the
    /// state before that record, truncates the file, and the storage keeps working.
    /// A second tear at the same place keeps a second copy; the first stays.
    @Test func aSecondTearAtTheSamePlaceKeepsBothCopies() throws {
        try withTempDir { dir in
            let path = dir.sub("d")
            var end = 0
            try withStorage(path, options: .init(preallocate: false)) { s throws in
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 0), entries: makeEntries(1...3, term: 1))
                try s.sync()
                end = totalWALBytes(s)
            }
            let segment = try #require(listFiles(path + "/wal").first)
            for garbage: [UInt8] in [[1, 2, 3, 4, 5, 6, 7, 8, 9], [9, 8, 7, 6, 5, 4, 3, 2, 1]] {
                writeBytes(path + "/wal/" + segment, readBytes(path + "/wal/" + segment) + garbage)
                try withStorage(path) { s throws in
                    #expect(s.recoveryReport.tornTail?.offset == end)
                    #expect(s.recoveryReport.warnings.contains { $0.contains("kept the 9 bytes") }, "\(s.recoveryReport.warnings)")
                }
            }
            #expect(readBytes(path + "/wal/" + segment + ".\(end).torn") == [1, 2, 3, 4, 5, 6, 7, 8, 9])
            #expect(readBytes(path + "/wal/" + segment + ".\(end)-1.torn") == [9, 8, 7, 6, 5, 4, 3, 2, 1])
        }
    }

    @Test func tornTailIsTruncatedAtEveryOffset() throws {
        try withTempDir { dir in
            let source = dir.sub("source")
            var before: LogState?
            var recordStart = 0
            // Byte-exact images: the file must end where the writes did.
            try withStorage(source, options: .init(preallocate: false)) { s throws in
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 0), entries: makeEntries(1...4, term: 1))
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 3), entries: makeEntries(5...6, term: 1))
                try s.sync()
                before = try LogState(s)
                recordStart = totalWALBytes(s)
                try s.append(hardState: HardState(term: 2, vote: 2, commit: 6), entries: makeEntries(7...9, term: 2, size: 20))
            }
            let segment = try #require(listFiles(source + "/wal").first)
            let full = readBytes(source + "/wal/" + segment)
            #expect(full.count > recordStart)
            for cut in recordStart..<full.count {
                let target = dir.sub("cut-\(cut)")
                copyDataDir(from: source, to: target)
                writeBytes(target + "/wal/" + segment, Array(full[..<cut]))
                try withStorage(target) { s throws in
                    #expect(try LogState(s) == before, "cut at \(cut)")
                    if cut > recordStart {
                        #expect(s.recoveryReport.tornTail?.offset == recordStart)
                        #expect(s.recoveryReport.tornTail?.droppedBytes == cut - recordStart)
                        // The bytes cut are kept aside, up to the last non-zero one.
                        var cutBytes = Array(full[recordStart..<cut])
                        while cutBytes.last == 0 { cutBytes.removeLast() }
                        let kept = target + "/wal/" + segment + ".\(recordStart).torn"
                        #expect(FileManager.default.fileExists(atPath: kept) == !cutBytes.isEmpty, "cut at \(cut)")
                        if !cutBytes.isEmpty { #expect(readBytes(kept) == cutBytes, "cut at \(cut)") }
                    } else {
                        #expect(s.recoveryReport.tornTail == nil)
                    }
                    #expect(readBytes(target + "/wal/" + segment).count == recordStart)
                    try s.append(hardState: HardState(term: 3, vote: 0, commit: 7), entries: makeEntries(7...8, term: 3))
                }
                try withStorage(target) { s throws in
                    #expect(s.recoveryReport.tornTail == nil)
                    #expect(s.recoveryReport.warnings.isEmpty, "cut at \(cut)")  // a kept copy is not "unexpected"
                    #expect(s.lastIndex == 8)
                    #expect(try s.term(at: 8) == 3)
                    #expect(s.hardState == HardState(term: 3, vote: 0, commit: 7))
                }
                removeTree(target)
            }
            // A crash that extended the file with zeros (size persisted, data not).
            let target = dir.sub("zeros")
            copyDataDir(from: source, to: target)
            var zeroed = full
            for i in (recordStart + 5)..<zeroed.count { zeroed[i] = 0 }
            writeBytes(target + "/wal/" + segment, zeroed + [UInt8](repeating: 0, count: 4096))
            try withStorage(target) { s throws in
                #expect(try LogState(s) == before)
                #expect(s.recoveryReport.tornTail?.offset == recordStart)
            }
        }
    }

    /// Damage followed by a record written after the damaged one was synced is not
    /// a torn write: open refuses, naming the file and the offset of the damaged
    /// record; in any segment but the last, even damage at the very end is refused.
    @Test func midLogCorruptionNamesFileAndOffset() throws {
        try withTempDir { dir in
            let source = dir.sub("source")
            try withStorage(source, options: .init(segmentSize: 600, preallocate: false)) { s throws in
                for i in 1...30 {
                    try s.append(
                        hardState: HardState(term: 1, vote: 1, commit: UInt64(i - 1)),
                        entries: makeEntries(UInt64(i)...UInt64(i), term: 1, size: 30))
                    try s.sync()  // each record is durable before the next is written
                }
            }
            let segments = listFiles(source + "/wal")
            #expect(segments.count >= 3)
            func expectCorrupted(_ segment: String, at offset: Int, mutate: (inout [UInt8]) -> Void) throws {
                let target = dir.sub("t-\(segment)-\(offset)")
                defer { removeTree(target) }
                copyDataDir(from: source, to: target)
                var bytes = readBytes(target + "/wal/" + segment)
                mutate(&bytes)
                writeBytes(target + "/wal/" + segment, bytes)
                let error = walError { _ = try DiskStorage.open(directory: target) }
                guard case let .corrupted(file, reported, _)? = error else {
                    Issue.record("expected .corrupted for \(segment)@\(offset), got \(String(describing: error))")
                    return
                }
                #expect(file.hasSuffix(segment))
                #expect(reported == offset)
                let text = try #require(error).description
                #expect(text.contains(segment) && text.contains("offset \(offset)"), "\(text)")
            }
            let last = try #require(segments.last)
            let lastOffsets = try recordOffsets(source + "/wal/" + last)
            #expect(lastOffsets.count >= 3)
            // A payload byte, a length byte and a CRC byte of an early record of the last segment.
            try expectCorrupted(last, at: lastOffsets[1]) { $0[lastOffsets[1] + 20] ^= 0x40 }
            try expectCorrupted(last, at: lastOffsets[1]) { $0[lastOffsets[1]] ^= 0x01 }
            try expectCorrupted(last, at: lastOffsets[1]) { $0[lastOffsets[1] + 2] ^= 0x10 }
            try expectCorrupted(last, at: lastOffsets[1]) { $0[lastOffsets[1] + 5] ^= 0x80 }
            // Non-last segment: early record, and its final record, and a cut tail.
            let first = segments[0]
            let firstOffsets = try recordOffsets(source + "/wal/" + first)
            try expectCorrupted(first, at: firstOffsets[1]) { $0[firstOffsets[1] + 12] ^= 0xFF }
            let final = try #require(firstOffsets.last)
            try expectCorrupted(first, at: final) { $0[$0.count - 1] ^= 0x01 }
            try expectCorrupted(first, at: final) { $0.removeLast(3) }
            // The header record of the last segment.
            try expectCorrupted(last, at: 0) { $0[12] ^= 0x04 }
        }
    }

    /// Models a crash after every byte the WAL ever wrote (across segment
    /// rollovers, and a Ready that installs a snapshot): reopening always yields
    /// exactly the state after the last batch whose record was complete — never a
    /// mix, never less than what was synced.
    @Test func crashAtEveryWriteBoundary() throws {
        try withTempDir(inMemory: true) { dir in
            let h = try recordHistory(dir: dir.sub("source"), batches: 24, syncEvery: 3, segmentSize: 700, seed: 7)
            #expect(h.files.count >= 3, "want several segments, got \(h.files.count)")
            let total = h.files.reduce(0) { $0 + $1.bytes.count }
            #expect(total == h.boundaries.last)
            var fileEnds: Set<Int> = []
            var acc = 0
            for f in h.files {
                acc += f.bytes.count
                fileEnds.insert(acc)
            }
            for prefix in 0...total {
                for emptyNext in fileEnds.contains(prefix) && prefix < total ? [false, true] : [false] {
                    let target = dir.sub("p\(prefix)-\(emptyNext)")
                    writeCrashImage(h, prefix: prefix, to: target, emptyNext: emptyNext)
                    let k = h.boundaries.lastIndex { $0 <= prefix } ?? 0
                    let synced = h.syncedBatchCounts.last { h.boundaries[$0] <= prefix } ?? 0
                    do {
                        try withStorage(target, options: .init(segmentSize: 700)) { s throws in
                            let state = try LogState(s)
                            #expect(state.snapshot.isEmpty == (k < 12))
                            #expect(state == h.states[k], "prefix \(prefix) (emptyNext \(emptyNext)): expected state after batch \(k)")
                            #expect(k >= synced)
                        }
                    } catch {
                        Issue.record("prefix \(prefix) (emptyNext \(emptyNext)): open failed: \(error)")
                    }
                    removeTree(target)
                }
            }
        }
    }

    @Test func missingSegmentIsReported() throws {
        try withTempDir { dir in
            let segments = try writeThirtyEntriesInSmallSegments(dir.path)
            try FileManager.default.removeItem(atPath: dir.path + "/wal/" + segments[1])
            let error = walError { _ = try DiskStorage.open(directory: dir.path, options: .init(segmentSize: 400)) }
            guard case let .missingSegment(_, expected, found)? = error else {
                Issue.record("expected .missingSegment, got \(String(describing: error))")
                return
            }
            #expect(expected == 1 && found == segments[2])
            // Losing the oldest segment without a snapshot to cover it is also refused.
            writeBytes(dir.path + "/wal/" + segments[1], [])
            try FileManager.default.removeItem(atPath: dir.path + "/wal/" + segments[1])
            try FileManager.default.removeItem(atPath: dir.path + "/wal/" + segments[0])
            guard case .unrecoverable? = walError({ _ = try DiskStorage.open(directory: dir.path) }) else {
                Issue.record("expected .unrecoverable when the oldest segments are gone")
                return
            }
        }
    }

    /// A segment before the last that lost everything (the file system lost
    /// synced data) is corruption, not a torn tail: the entries it held may
    /// have been acknowledged (storage review finding).
    @Test func anEmptySegmentBeforeTheLastIsCorruption() throws {
        try withTempDir { dir in
            let segments = try writeThirtyEntriesInSmallSegments(dir.path)
            writeBytes(dir.path + "/wal/" + segments[1], [])
            guard case let .corrupted(file, offset, _)? = walError({ _ = try DiskStorage.open(directory: dir.path) }) else {
                Issue.record("expected .corrupted for an empty middle segment")
                return
            }
            #expect(file.hasSuffix(segments[1]) && offset == 0)
        }
    }

    /// Thirty one-entry appends into 400-byte segments (three or more); the
    /// segment file names, in order.
    func writeThirtyEntriesInSmallSegments(_ directory: String) throws -> [String] {
        try withStorage(directory, options: .init(segmentSize: 400)) { s throws in
            for i in 1...30 {
                try s.append(hardState: nil, entries: makeEntries(UInt64(i)...UInt64(i), term: 1, size: 30))
            }
        }
        let segments = listFiles(directory + "/wal")
        #expect(segments.count >= 3)
        return segments
    }
}
