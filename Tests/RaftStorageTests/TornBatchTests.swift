import Foundation
import Raft
import Testing
@testable import RaftStorage

/// A segment with a synced prefix and then records A and B written in one
/// group-commit batch; `syncedLater` adds a sync and a record C after them.
private struct BatchImage {
    var source: String
    var segment: String
    var bytes: [UInt8]
    /// State once the synced prefix is applied (before A).
    var before: LogState
    var recordA: Range<Int>
    var recordB: Range<Int>

    /// `dataOfA` makes the first entry of A from A's offset.
    init(dir: TempDir, syncedLater: Bool, dataOfA: ((Int) -> [UInt8])? = nil) throws {
        source = dir.sub("source")
        var before: LogState?
        var aStart = 0
        try withStorage(source, options: .init(preallocate: false)) { s throws in
            try s.append(hardState: HardState(term: 1, vote: 1, commit: 1), entries: makeEntries(1...3, term: 1))
            try s.sync()
            before = try LogState(s)
            aStart = totalWALBytes(s)
            var entriesA = makeEntries(4...6, term: 1, size: 700)
            if let dataOfA { entriesA[0].data = dataOfA(aStart) }
            try s.append(hardState: HardState(term: 1, vote: 1, commit: 3), entries: entriesA)
            try s.append(hardState: HardState(term: 1, vote: 1, commit: 6), entries: makeEntries(7...8, term: 1))
            if syncedLater {
                try s.sync()
                try s.append(hardState: HardState(term: 1, vote: 1, commit: 8), entries: makeEntries(9...9, term: 1))
            }
        }
        self.before = try #require(before)
        segment = try #require(listFiles(source + "/wal").first)
        bytes = readBytes(source + "/wal/" + segment)
        let offsets = try recordOffsets(source + "/wal/" + segment)
        let a = try #require(offsets.firstIndex(of: aStart))
        recordA = offsets[a]..<offsets[a + 1]
        recordB = offsets[a + 1]..<(a + 2 < offsets.count ? offsets[a + 2] : bytes.count)
    }

    /// Copies the source with the segment replaced by `image`.
    func write(_ image: [UInt8], to target: String) {
        copyDataDir(from: source, to: target)
        writeBytes(target + "/wal/" + segment, image)
    }
}

/// The byte ranges a lost or garbled sector inside `record` could cover.
private func sectors(in record: Range<Int>) -> [Range<Int>] {
    var out: [Range<Int>] = [record.lowerBound..<(record.lowerBound + 4), (record.lowerBound + 4)..<(record.lowerBound + 8)]
    var start = (record.lowerBound / 512 + 1) * 512
    while start < record.upperBound {
        out.append(start..<min(start + 512, record.upperBound))
        start += 512
    }
    out.append((record.upperBound - 3)..<record.upperBound)
    return out
}

@Suite struct TornBatchTests {
    /// Records of one unsynced batch can reach the disk out of order: a lost or
    /// garbled sector in A while a later record B of the same batch is intact is
    /// a torn write, not corruption. Open succeeds with the state before A.
    @Test func damageInsideUnsyncedBatchIsTornTail() throws {
        try withTempDir(inMemory: true) { dir in
            let image = try BatchImage(dir: dir, syncedLater: false)
            let ranges = sectors(in: image.recordA)
            #expect(ranges.count >= 4)
            var rng = SeededRandom(seed: 42)
            for (i, range) in ranges.enumerated() {
                #expect(range.clamped(to: image.recordA) == range && !range.overlaps(image.recordB))
                for garble in [false, true] {
                    var damaged = image.bytes
                    for j in range { damaged[j] = garble ? UInt8.random(in: 0...255, using: &rng) : 0 }
                    let target = dir.sub("t\(i)-\(garble)")
                    image.write(damaged, to: target)
                    try withStorage(target) { s throws in
                        #expect(try LogState(s) == image.before, "damage \(range) garble \(garble)")
                        #expect(s.recoveryReport.tornTail?.offset == image.recordA.lowerBound)
                    }
                    #expect(readBytes(target + "/wal/" + image.segment).count == image.recordA.lowerBound)
                    removeTree(target)
                }
            }
        }
    }

    /// The same damage in a batch that a sync covered, followed by a later
    /// record, is corruption: that record says the segment was durable past A.
    @Test func damageBeforeSyncedLaterRecordIsCorruption() throws {
        try withTempDir(inMemory: true) { dir in
            let image = try BatchImage(dir: dir, syncedLater: true)
            for (i, range) in sectors(in: image.recordA).enumerated() {
                var damaged = image.bytes
                for j in range { damaged[j] ^= 0x5A }
                let target = dir.sub("c\(i)")
                image.write(damaged, to: target)
                let error = walError { _ = try DiskStorage.open(directory: target) }
                guard case let .corrupted(file, offset, reason)? = error else {
                    Issue.record("damage \(range): expected .corrupted, got \(String(describing: error))")
                    continue
                }
                #expect(file.hasSuffix(image.segment) && offset == image.recordA.lowerBound, "\(range)")
                #expect(reason.contains("synced through"), "\(reason)")
                // Refusing leaves the file alone.
                #expect(readBytes(target + "/wal/" + image.segment) == damaged)
                removeTree(target)
            }
        }
    }

    /// Entry data may contain a complete, valid framed record. When the write of
    /// the record carrying it is torn, that frame (it names the offset it was
    /// framed for, not where it sits) is not mistaken for a later record.
    @Test func tornRecordContainingFramedRecordIsTornTail() throws {
        try withTempDir(inMemory: true) { dir in
            let inner = WALRecord.batch(Batch(hardState: HardState(term: 9, vote: 9, commit: 9), entries: makeEntries(1...2, term: 9)))
            let header = WALRecord.segmentHeader(
                SegmentHeader(sequence: 3, firstIndex: 1, snapshotIndex: 0, snapshotTerm: 0, hardState: HardState(term: 9)))
            // Frames from elsewhere (another segment, say): checksums match, and the
            // first even claims a synced length past A's start.
            func embedded(_ aStart: Int) -> [UInt8] {
                inner.framed(offset: aStart + 1000, syncedThrough: aStart + 1) + header.framed()
            }
            let image = try BatchImage(dir: dir, syncedLater: false) { embedded($0) + [UInt8](repeating: 7, count: 100) }
            let payload = embedded(image.recordA.lowerBound)
            let at = try #require(firstOccurrence(of: payload, in: image.bytes))
            #expect(image.recordA.contains(at))
            // Torn after the embedded frames, inside A; also with B intact behind a lost sector.
            let cut = Array(image.bytes[..<(at + payload.count + 50)])
            var lostSector = image.bytes
            for j in (at + payload.count)..<(at + payload.count + 64) { lostSector[j] = 0 }
            for (name, bytes) in [("cut", cut), ("lost", lostSector)] {
                let target = dir.sub(name)
                image.write(bytes, to: target)
                try withStorage(target) { s throws in
                    #expect(try LogState(s) == image.before, "\(name)")
                    #expect(s.recoveryReport.tornTail?.offset == image.recordA.lowerBound, "\(name)")
                }
            }
        }
    }

    /// The search for a later record checksums only frames that name their own
    /// position and a synced length past the damage, and caps that work: crafted
    /// data full of such frames is refused rather than scanned quadratically.
    @Test func evidenceSearchIsBounded() {
        let damage = 100
        var bytes = [UInt8](repeating: 0xEE, count: 1 << 18)
        var p = damage + 1
        var planted = 0
        while p + 32 < bytes.count {
            // Looks like a record naming its own offset, synced past the damage, running to the end of file.
            var w = ByteWriter()
            w.u32(UInt32(bytes.count - p - 8))
            w.u32(0xDEAD_BEEF)
            w.u64(UInt64(p))
            w.u64(UInt64(damage + 1))
            w.u8(WALRecordType.batch.rawValue)
            bytes.replaceSubrange(p..<(p + w.bytes.count), with: w.bytes)
            planted += 1
            p += 64
        }
        guard case let .undecided(candidates) = SegmentReader.evidence(after: damage, in: bytes) else {
            Issue.record("crafted frames were not capped")
            return
        }
        #expect(candidates < planted)
        // Without frames naming their own position nothing is checksummed at all.
        let garbage = (0..<(1 << 18)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        #expect(SegmentReader.evidence(after: 0, in: garbage, crcBudget: 0) == .none)
    }
}

private func firstOccurrence(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard needle.count <= haystack.count else { return nil }
    return (0...(haystack.count - needle.count)).first { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
}
