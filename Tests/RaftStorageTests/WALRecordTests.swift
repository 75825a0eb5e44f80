import Checksum
import Raft
import Testing
@testable import RaftStorage

@Suite struct WALRecordTests {
    private func roundTrip(_ record: WALRecord) throws -> WALRecord {
        let bytes = record.framed()
        #expect(Int(readU32LE(bytes, at: 0)) == bytes.count - 8)
        #expect(readU32LE(bytes, at: 4) == CRC32C.checksum(Array(bytes[8...])))
        let scan = try SegmentReader.scan(bytes, path: "x.wal", isLast: false)
        #expect(scan.records.count == 1)
        #expect(scan.validLength == bytes.count)
        return try #require(scan.records.first).record
    }

    @Test func everyRecordTypeRoundTrips() throws {
        let records: [WALRecord] = [
            .segmentHeader(SegmentHeader(
                sequence: 7, firstIndex: 100, snapshotIndex: 99, snapshotTerm: 4,
                hardState: HardState(term: 5, vote: 2, commit: 98))),
            .batch(Batch(hardState: HardState(term: 1, vote: 3, commit: 0), entries: [])),
            .batch(Batch(hardState: nil, entries: makeEntries(1...5, term: 2, size: 0))),
            .batch(Batch(
                hardState: HardState(term: .max, vote: .max, commit: .max),
                entries: makeEntries(10...12, term: 3, size: 300))),
            .batch(Batch(
                snapshot: SnapshotMarker(index: 20, term: 3, mode: .replaceLog),
                hardState: HardState(term: 3, vote: 0, commit: 20), entries: makeEntries(21...22, term: 3))),
            .batch(Batch(snapshot: SnapshotMarker(index: 9, term: 1, mode: .keepLog), hardState: nil, entries: [])),
            .snapshotMarker(SnapshotMarker(index: 50, term: 3, mode: .keepLog)),
            .snapshotMarker(SnapshotMarker(index: 51, term: 4, mode: .replaceLog)),
        ]
        for record in records {
            #expect(try roundTrip(record) == record)
        }
    }

    /// A record whose CRC matches but whose payload is malformed is corruption,
    /// never a torn tail, even at the end of the last segment.
    @Test func validChecksumButMalformedPayloadIsCorruption() {
        // Claims two entries but has none.
        expectCorruptedAtZero(body: positions(0, 0) + [WALRecordType.batch.rawValue, 0, 2, 0, 0, 0])
    }

    /// A checksummed frame naming another offset, or synced past itself, was not
    /// written where it sits (a crash never moves bytes): corruption.
    @Test func validChecksumButWrongPositionIsCorruption() {
        let marker: [UInt8] = [WALRecordType.snapshotMarker.rawValue] + [UInt8](repeating: 1, count: 16) + [0]
        expectCorruptedAtZero(body: positions(64, 0) + marker)
        expectCorruptedAtZero(body: positions(0, 8) + marker)
    }

    private func positions(_ offset: UInt64, _ synced: UInt64) -> [UInt8] {
        var w = ByteWriter()
        w.u64(offset)
        w.u64(synced)
        return w.bytes
    }

    private func expectCorruptedAtZero(body: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        var framed = ByteWriter()
        framed.u32(UInt32(body.count))
        framed.u32(CRC32C.checksum(body))
        framed.raw(body)
        let error = walError { _ = try SegmentReader.scan(framed.bytes, path: "seg.wal", isLast: true) }
        guard case let .corrupted(file, offset, _)? = error else {
            Issue.record("expected corrupted, got \(String(describing: error))", sourceLocation: sourceLocation)
            return
        }
        #expect(file == "seg.wal" && offset == 0, sourceLocation: sourceLocation)
    }

    /// `framedLength()` is exactly what `frame(into:)` produces, so a rollover
    /// decided on it is right.
    @Test func framedLengthMatchesEncoding() throws {
        let records: [WALRecord] = [
            .segmentHeader(SegmentHeader(sequence: 1, firstIndex: 2, snapshotIndex: 3, snapshotTerm: 4, hardState: HardState(term: 5))),
            .batch(Batch(hardState: nil, entries: [])),
            .batch(Batch(
                snapshot: SnapshotMarker(index: 9, term: 1, mode: .keepLog), hardState: HardState(term: 1),
                entries: makeEntries(10...13, term: 1, size: 77))),
            .snapshotMarker(SnapshotMarker(index: 5, term: 2, mode: .replaceLog)),
        ]
        for record in records {
            #expect(try record.framedLength() == record.framed(offset: 1234, syncedThrough: 1000).count)
        }
    }

    /// Sizes that do not fit a u32 field are refused with `.invalidArgument`
    /// before anything is encoded (a real 4 GiB record is too big for a test, so
    /// the size check is driven with the sizes alone).
    @Test func oversizedRecordsAreRejectedBeforeEncoding() throws {
        let limit = Int(UInt32.max)
        func rejected(_ lengths: some Collection<Int>) -> Bool {
            if case .invalidArgument? = walError({
                _ = try WALRecord.batchLength(hasSnapshot: true, hasHardState: true, entryDataLengths: lengths)
            }) { return true }
            return false
        }
        #expect(rejected(repeatElement(0, count: limit + 1)))  // entry count
        #expect(rejected([limit + 1]))  // one entry's data
        #expect(rejected([limit / 2, limit / 2]))  // the whole record
        #expect(rejected([Int.max, Int.max]))  // no overflow on the way
        let small = try WALRecord.batchLength(hasSnapshot: false, hasHardState: false, entryDataLengths: [3, 4])
        #expect(small == WALRecord.minimumLength + 1 + 4 + 2 * 21 + 7)
        #expect(try checkedU32(limit, "x") == UInt32.max)
        guard case .invalidArgument? = walError({ _ = try checkedU32(limit + 1, "x") }) else {
            Issue.record("u32 overflow not rejected")
            return
        }
    }

    @Test func fileNamesRoundTrip() {
        let seg = SegmentName(sequence: 0x1f, firstIndex: 0xabc)
        #expect(seg.fileName == "000000000000001f-0000000000000abc.wal")
        #expect(SegmentName(fileName: seg.fileName) == seg)
        #expect(SegmentName(fileName: "000000000000001f-0000000000000abc.wal.tmp") == nil)
        #expect(SegmentName(fileName: "000000000000001F-0000000000000abc.wal") == nil)
        let snap = SnapshotFile.Name(term: 3, index: 0x10)
        #expect(snap.fileName == "0000000000000003-0000000000000010.snap")
        #expect(SnapshotFile.Name(fileName: snap.fileName) == snap)
        #expect(SnapshotFile.Name(fileName: snap.fileName + ".tmp") == nil)
    }
}
