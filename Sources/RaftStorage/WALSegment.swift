import Checksum
/// `<sequence:16 hex>-<firstIndex:16 hex>.wal`. Sequences are consecutive;
/// `firstIndex` is `lastIndex + 1` of the log when the segment was created.
struct SegmentName: Equatable, Comparable {
    var sequence: UInt64
    var firstIndex: UInt64

    var fileName: String { "\(hex16(sequence))-\(hex16(firstIndex)).wal" }

    init(sequence: UInt64, firstIndex: UInt64) {
        self.sequence = sequence
        self.firstIndex = firstIndex
    }

    init?(fileName: String) {
        guard fileName.utf8.count == 37, fileName.hasSuffix(".wal") else { return nil }
        let stem = fileName.dropLast(4)
        let parts = stem.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let seq = parseHex16(parts[0]), let first = parseHex16(parts[1]) else { return nil }
        self.init(sequence: seq, firstIndex: first)
    }

    static func < (a: SegmentName, b: SegmentName) -> Bool { a.sequence < b.sequence }
}

/// A decoded record and where it sits, for error messages.
struct LocatedRecord {
    var record: WALRecord
    var file: String
    var offset: Int
}

/// The result of reading one segment.
struct SegmentScan {
    var records: [LocatedRecord]
    /// Bytes that hold whole, valid records; the file is cut here if `torn`.
    var validLength: Int
    var fileLength: Int
    /// Why the tail after `validLength` was judged an interrupted write.
    var tornReason: String?
    /// The `syncedThrough` of the last valid record: the bytes from here to
    /// `validLength` were never proven durable (see ``WAL/open``).
    var lastSyncedThrough = 0
}

enum SegmentReader {
    /// Decodes the records of a segment.
    ///
    /// A damaged record at offset `p` (short frame, length past end of file, CRC
    /// mismatch, zero padding) in the last segment is an interrupted write unless
    /// ``evidence(after:in:crcBudget:)`` finds an intact later record that was written after
    /// `p` had been synced. Records of one group-commit batch may reach the disk
    /// in any order, so an intact record after the damage proves nothing by
    /// itself; a record whose `syncedThrough` lies past `p` does. A torn write
    /// stops the scan at `p` with `tornReason` set. Damage in any other segment
    /// (fsynced before its successor was created) is always corruption.
    ///
    /// Throws ``WALError/corrupted(file:offset:reason:)`` for corruption, and also
    /// for a record whose CRC matches but whose position fields or payload are wrong.
    static func scan(_ bytes: [UInt8], path: String, isLast: Bool) throws(WALError) -> SegmentScan {
        var records: [LocatedRecord] = []
        var pos = 0
        var lastSynced = 0
        let count = bytes.count

        func damaged(_ reason: String) throws(WALError) -> SegmentScan {
            guard isLast else {
                throw .corrupted(file: path, offset: pos, reason: "\(reason) (in a segment that is not the last one)")
            }
            switch evidence(after: pos, in: bytes) {
            case .none:
                return SegmentScan(
                    records: records, validLength: pos, fileLength: count, tornReason: reason, lastSyncedThrough: lastSynced)
            case let .writtenAfterSync(offset, syncedThrough):
                throw .corrupted(
                    file: path, offset: pos,
                    reason: "\(reason); the intact record at offset \(offset) was written after the segment had been "
                        + "synced through offset \(syncedThrough), so this record was durable")
            case let .undecided(candidates):
                throw .corrupted(
                    file: path, offset: pos,
                    reason: "\(reason); gave up verifying \(candidates) record-like frames after it, "
                        + "so corruption cannot be ruled out")
            }
        }

        while pos < count {
            let remaining = count - pos
            if remaining < WALRecord.frameOverhead {
                return try damaged("incomplete record frame (\(remaining) bytes before end of file)")
            }
            let length = Int(readU32LE(bytes, at: pos))
            if length == 0 {
                let zeros = FileIO.isAllZero(bytes, from: pos)
                // The last segment is preallocated: zeros to the end are its
                // unused space, where the next record goes.
                if zeros && isLast {
                    return SegmentScan(
                        records: records, validLength: pos, fileLength: count, tornReason: nil, lastSyncedThrough: lastSynced)
                }
                // Zero padding elsewhere is what a file extended by a crash looks like.
                return try damaged(zeros ? "\(remaining) zero bytes instead of a record" : "record with zero length")
            }
            if length > remaining - WALRecord.frameOverhead {
                return try damaged("record length \(length) runs past end of file (\(remaining - 8) bytes left)")
            }
            if length < WALRecord.minimumLength {
                return try damaged("record length \(length) is below the minimum of \(WALRecord.minimumLength)")
            }
            let checked = (pos + WALRecord.frameOverhead)..<(pos + WALRecord.frameOverhead + length)
            let storedCRC = readU32LE(bytes, at: pos + 4)
            let crc = CRC32C.update(0, bytes, range: checked)
            if crc != storedCRC {
                return try damaged(
                    "checksum mismatch (stored 0x\(String(storedCRC, radix: 16)), computed 0x\(String(crc, radix: 16)))")
            }
            // A crash never moves bytes: a checksummed frame naming another offset was not written here.
            let ownOffset = readU64LE(bytes, at: pos + WALRecord.frameOverhead)
            let syncedThrough = readU64LE(bytes, at: pos + WALRecord.frameOverhead + 8)
            guard ownOffset == UInt64(pos), syncedThrough <= ownOffset else {
                throw .corrupted(
                    file: path, offset: pos,
                    reason: "record with valid checksum claims offset \(ownOffset), synced through \(syncedThrough)")
            }
            let record: WALRecord
            do {
                record = try WALRecord.decode(bytes, body: (pos + WALRecord.typeOffset)..<checked.upperBound)
            } catch {
                throw .corrupted(file: path, offset: pos, reason: "undecodable record with valid checksum: \(error.reason)")
            }
            records.append(LocatedRecord(record: record, file: path, offset: pos))
            lastSynced = Int(syncedThrough)
            pos = checked.upperBound
        }
        return SegmentScan(records: records, validLength: pos, fileLength: count, tornReason: nil, lastSyncedThrough: lastSynced)
    }
}
