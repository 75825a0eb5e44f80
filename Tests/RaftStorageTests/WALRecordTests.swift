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
        var body: [UInt8] = [WALRecordType.batch.rawValue, 0]
        body += [2, 0, 0, 0]  // claims two entries but has none
        var framed = ByteWriter()
        framed.u32(UInt32(body.count))
        framed.u32(CRC32C.checksum(body))
        framed.raw(body)
        let error = walError { _ = try SegmentReader.scan(framed.bytes, path: "seg.wal", isLast: true) }
        guard case let .corrupted(file, offset, _)? = error else {
            Issue.record("expected corrupted, got \(String(describing: error))")
            return
        }
        #expect(file == "seg.wal" && offset == 0)
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
