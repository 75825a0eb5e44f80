#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Raft

/// One snapshot on disk: `snap/<term:16 hex>-<index:16 hex>.snap`.
///
/// Format (little-endian): `magic u32 ("ENSS") | version u8 | crc32c u32 | bodyLength u64 | body`,
/// body = `index u64 | term u64 | voterCount u32 | voters u64… | learnerCount u32 |
/// learners u64… | dataLength u64 | data`; the CRC covers the body.
///
/// Written atomically: a temp file (`<name>.tmp`) is written and fsynced, renamed
/// into place, and the directory fsynced. A leftover `.tmp` is an interrupted save.
enum SnapshotFile {
    static let magic: UInt32 = 0x5353_4E45  // "ENSS" read as little-endian
    static let version: UInt8 = 1
    static let headerLength = 4 + 1 + 4 + 8
    static let tempSuffix = ".tmp"

    struct Name: Equatable {
        var term: UInt64
        var index: UInt64

        var fileName: String { "\(hex16(term))-\(hex16(index)).snap" }

        init(term: UInt64, index: UInt64) {
            self.term = term
            self.index = index
        }

        init?(fileName: String) {
            guard fileName.utf8.count == 38, fileName.hasSuffix(".snap") else { return nil }
            let parts = fileName.dropLast(5).split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 2, let term = parseHex16(parts[0]), let index = parseHex16(parts[1]) else { return nil }
            self.init(term: term, index: index)
        }
    }

    /// Size of the body for these counts; throws ``WALError/invalidArgument(_:)``
    /// when a count does not fit its u32 field (checked before encoding).
    static func bodyLength(voters: Int, learners: Int, dataLength: Int) throws(WALError) -> Int {
        _ = try checkedU32(voters, "snapshot voter count")
        _ = try checkedU32(learners, "snapshot learner count")
        return 8 + 8 + 4 + 8 * voters + 4 + 8 * learners + 8 + dataLength
    }

    /// The file's bytes before the snapshot's data: the header (whose
    /// checksum and length cover the data too) and the body's fields up to
    /// the data. The data follows unchanged, so ``write(_:directory:)`` writes
    /// it straight from the snapshot, with no copy of a state that may be
    /// hundreds of megabytes.
    static func prefix(_ snapshot: Snapshot) throws(WALError) -> [UInt8] {
        let conf = snapshot.metadata.confState
        let length = try bodyLength(
            voters: conf.voters.count, learners: conf.learners.count, dataLength: snapshot.data.count)
        var fields = ByteWriter(capacity: length - snapshot.data.count)
        fields.u64(snapshot.metadata.index)
        fields.u64(snapshot.metadata.term)
        fields.u32(UInt32(truncatingIfNeeded: conf.voters.count))
        for v in conf.voters { fields.u64(v) }
        fields.u32(UInt32(truncatingIfNeeded: conf.learners.count))
        for l in conf.learners { fields.u64(l) }
        fields.u64(UInt64(snapshot.data.count))
        var out = ByteWriter(capacity: headerLength + fields.bytes.count)
        out.u32(magic)
        out.u8(version)
        out.u32(CRC32C.update(CRC32C.checksum(fields.bytes), snapshot.data))
        out.u64(UInt64(length))
        out.raw(fields.bytes)
        return out.bytes
    }

    /// The whole file's bytes (tests; ``write(_:directory:)`` avoids the copy).
    static func encode(_ snapshot: Snapshot) throws(WALError) -> [UInt8] {
        try prefix(snapshot) + snapshot.data
    }

    /// Decodes and verifies a snapshot file's bytes; errors name `path`.
    static func decode(_ bytes: consuming [UInt8], path: String) throws(WALError) -> Snapshot {
        let metadata: SnapshotMetadata
        let dataStart: Int
        do throws(DecodeError) {
            var r = ByteReader(copy bytes)
            let m = try r.u32("magic")
            guard m == magic else { throw DecodeError(reason: "not a snapshot file (bad magic)") }
            let v = try r.u8("version")
            guard v == version else { throw DecodeError(reason: "unsupported snapshot format version \(v)") }
            let crc = try r.u32("checksum")
            let length = try r.u64("body length")
            guard length == UInt64(r.remaining) else {
                throw DecodeError(reason: "body length \(length) but \(r.remaining) bytes present")
            }
            let computed = CRC32C.update(0, bytes, range: r.position..<bytes.count)
            guard computed == crc else {
                throw DecodeError(
                    reason: "checksum mismatch (stored 0x\(String(crc, radix: 16)), computed 0x\(String(computed, radix: 16)))")
            }
            let index = try r.u64("index")
            let term = try r.u64("term")
            let voterCount = Int(try r.u32("voter count"))
            guard voterCount <= r.remaining / 8 else { throw DecodeError(reason: "voter count \(voterCount) too large") }
            var voters: [NodeID] = []
            for _ in 0..<voterCount { voters.append(try r.u64("voter")) }
            let learnerCount = Int(try r.u32("learner count"))
            guard learnerCount <= r.remaining / 8 else { throw DecodeError(reason: "learner count \(learnerCount) too large") }
            var learners: [NodeID] = []
            for _ in 0..<learnerCount { learners.append(try r.u64("learner")) }
            let dataLength = try r.u64("data length")
            guard dataLength == UInt64(r.remaining) else {
                throw DecodeError(reason: "data length \(dataLength) but \(r.remaining) bytes present")
            }
            metadata = SnapshotMetadata(index: index, term: term, confState: ConfState(voters: voters, learners: learners))
            dataStart = r.position
        } catch {
            throw .corrupted(file: path, offset: 0, reason: "snapshot file: \(error.reason)")
        }
        // The data is the rest of the file: drop the header in place rather
        // than copy hundreds of megabytes into a new array.
        var data = bytes
        data.removeSubrange(0..<dataStart)
        return Snapshot(metadata: metadata, data: data)
    }

    /// Reads and verifies `directory/name`, checking that its content matches its name.
    static func load(directory: String, name: Name) throws(WALError) -> Snapshot {
        let path = FileIO.joined(directory, name.fileName)
        let snapshot = try decode(try FileIO.readFile(path), path: path)
        guard snapshot.metadata.index == name.index, snapshot.metadata.term == name.term else {
            throw .corrupted(
                file: path, offset: 0,
                reason: "snapshot holds index \(snapshot.metadata.index) term \(snapshot.metadata.term), "
                    + "which does not match its file name")
        }
        return snapshot
    }

    /// Writes `snapshot` atomically into `directory`: after this returns the file
    /// is durable under its final name; after a crash before that, either the old
    /// set of snapshot files or the new one is visible, never a partial file under
    /// a final name (the temp file is removed if writing it fails).
    /// A snapshot file is written and synced this many bytes at a time.
    static let syncSlice = 8 << 20

    @discardableResult
    static func write(_ snapshot: Snapshot, directory: String) throws(WALError) -> Name {
        let name = Name(term: snapshot.metadata.term, index: snapshot.metadata.index)
        let finalPath = FileIO.joined(directory, name.fileName)
        let tempPath = finalPath + tempSuffix
        let head = try prefix(snapshot)
        let data = snapshot.data
        let fd = try FileIO.openFile(tempPath, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try FileIO.pwriteAll(fd, head, at: 0, path: tempPath)
            // The data in slices, each synced: one sync of hundreds of
            // megabytes fills the disk queue and stalls the WAL's fdatasync
            // behind it (seen as 0.2–0.5 s WAL syncs and slow requests while
            // snapshots were written).
            var offset = 0
            while offset < data.count {
                let end = min(offset + syncSlice, data.count)
                try FileIO.pwriteAll(fd, data[offset..<end], at: head.count + offset, path: tempPath)
                if end < data.count { try FileIO.dataSync(fd, path: tempPath) }
                offset = end
            }
            try FileIO.fullSync(fd, path: tempPath)
        } catch {
            FileIO.closeFile(fd)
            try? FileIO.removeFile(tempPath)
            throw error
        }
        FileIO.closeFile(fd)
        try FileIO.renameFile(tempPath, finalPath)
        try FileIO.syncDirectory(directory)
        return name
    }
}
