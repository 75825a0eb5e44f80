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
}

enum SegmentReader {
    /// Decodes the records of a segment.
    ///
    /// A damaged record at offset `p` (short frame, length past end of file, CRC
    /// mismatch, zero padding) is an interrupted write when `isLast` and no valid
    /// record starts anywhere after `p`: writes after the last fdatasync may land
    /// partially, but nothing after them can be valid. Then the scan stops at `p`
    /// with `tornReason` set. Otherwise — a valid record follows, or the segment
    /// is not the last (it was fsynced before its successor was created) — it is
    /// corruption and throws ``WALError/corrupted(file:offset:reason:)``.
    /// A record whose CRC matches but does not decode is always corruption.
    static func scan(_ bytes: [UInt8], path: String, isLast: Bool) throws(WALError) -> SegmentScan {
        var records: [LocatedRecord] = []
        var pos = 0
        let count = bytes.count

        func damaged(_ reason: String) throws(WALError) -> SegmentScan {
            if isLast, let valid = nextValidFrame(bytes, after: pos) {
                throw .corrupted(file: path, offset: pos, reason: "\(reason); a valid record follows at offset \(valid)")
            }
            if !isLast {
                throw .corrupted(file: path, offset: pos, reason: "\(reason) (in a segment that is not the last one)")
            }
            return SegmentScan(records: records, validLength: pos, fileLength: count, tornReason: reason)
        }

        while pos < count {
            let remaining = count - pos
            if remaining <= WALRecord.frameOverhead {
                return try damaged("incomplete record frame (\(remaining) bytes before end of file)")
            }
            let length = Int(readU32LE(bytes, at: pos))
            let storedCRC = readU32LE(bytes, at: pos + 4)
            if length == 0 {
                // Zero padding is what a file extended by a crash looks like.
                let zeros = bytes[pos...].allSatisfy { $0 == 0 }
                return try damaged(zeros ? "\(remaining) zero bytes instead of a record" : "record with zero length")
            }
            if length > remaining - WALRecord.frameOverhead {
                return try damaged("record length \(length) runs past end of file (\(remaining - 8) bytes left)")
            }
            let body = (pos + WALRecord.frameOverhead)..<(pos + WALRecord.frameOverhead + length)
            let crc = CRC32C.update(0, bytes, range: body)
            if crc != storedCRC {
                return try damaged(
                    "checksum mismatch (stored 0x\(String(storedCRC, radix: 16)), computed 0x\(String(crc, radix: 16)))")
            }
            let record: WALRecord
            do {
                record = try WALRecord.decode(bytes, body: body)
            } catch {
                throw .corrupted(file: path, offset: pos, reason: "undecodable record with valid checksum: \(error.reason)")
            }
            records.append(LocatedRecord(record: record, file: path, offset: pos))
            pos = body.upperBound
        }
        return SegmentScan(records: records, validLength: pos, fileLength: count, tornReason: nil)
    }

    /// The first offset after `start` where a complete record with a matching CRC
    /// and a known type begins, if any.
    static func nextValidFrame(_ bytes: [UInt8], after start: Int) -> Int? {
        let count = bytes.count
        var q = start + 1
        while q + WALRecord.frameOverhead < count {
            let length = Int(readU32LE(bytes, at: q))
            let bodyStart = q + WALRecord.frameOverhead
            if length >= 1, length <= count - bodyStart, WALRecordType(rawValue: bytes[bodyStart]) != nil,
                CRC32C.update(0, bytes, range: bodyStart..<(bodyStart + length)) == readU32LE(bytes, at: q + 4)
            {
                return q
            }
            q += 1
        }
        return nil
    }
}

/// Appends framed records to one open segment file. Writes go straight to the
/// file with `pwrite`; durability only comes from ``sync()``.
final class SegmentWriter {
    let path: String
    let name: SegmentName
    private(set) var fd: Int32
    /// End of the valid data; the next record is written here.
    private(set) var offset: Int
    /// Bytes written since the last fdatasync.
    private(set) var unsyncedBytes = 0

    /// Takes ownership of `fd`, positioned logically at `offset`.
    init(path: String, name: SegmentName, fd: Int32, offset: Int) {
        self.path = path
        self.name = name
        self.fd = fd
        self.offset = offset
    }

    deinit { close() }

    func write(_ bytes: [UInt8]) throws(WALError) {
        try FileIO.pwriteAll(fd, bytes, at: offset, path: path)
        offset += bytes.count
        unsyncedBytes += bytes.count
    }

    /// One fdatasync. Returns false (and does nothing) when there is nothing to sync.
    @discardableResult
    func sync() throws(WALError) -> Bool {
        guard unsyncedBytes > 0 else { return false }
        try FileIO.dataSync(fd, path: path)
        unsyncedBytes = 0
        return true
    }

    func close() {
        if fd >= 0 {
            FileIO.closeFile(fd)
            fd = -1
        }
    }
}
