import Checksum
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
    /// A snapshot file that did not verify at recovery is kept under its name
    /// plus this, out of the snapshots counted and read.
    static let damagedSuffix = ".damaged"

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

    /// The body's fields before the data (the data's length last).
    private static func fields(_ metadata: SnapshotMetadata, dataLength: Int) throws(WALError) -> [UInt8] {
        let conf = metadata.confState
        let length = try bodyLength(voters: conf.voters.count, learners: conf.learners.count, dataLength: dataLength)
        var fields = ByteWriter(capacity: length - dataLength)
        fields.u64(metadata.index)
        fields.u64(metadata.term)
        fields.u32(UInt32(truncatingIfNeeded: conf.voters.count))
        for v in conf.voters { fields.u64(v) }
        fields.u32(UInt32(truncatingIfNeeded: conf.learners.count))
        for l in conf.learners { fields.u64(l) }
        fields.u64(UInt64(dataLength))
        return fields.bytes
    }

    private static func header(crc: UInt32, bodyLength: Int) -> [UInt8] {
        var out = ByteWriter(capacity: headerLength)
        out.u32(magic)
        out.u8(version)
        out.u32(crc)
        out.u64(UInt64(bodyLength))
        return out.bytes
    }

    /// The whole file's bytes (tests; ``write(_:directory:)`` writes the
    /// data straight from the snapshot instead).
    static func encode(_ snapshot: Snapshot) throws(WALError) -> [UInt8] {
        let fields = try fields(snapshot.metadata, dataLength: snapshot.data.count)
        let crc = CRC32C.update(CRC32C.checksum(fields), snapshot.data)
        return header(crc: crc, bodyLength: fields.count + snapshot.data.count) + fields + snapshot.data
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

    /// A snapshot file is written and synced this many bytes at a time: one
    /// sync of hundreds of megabytes fills the disk queue and stalls the WAL's
    /// fdatasync behind it (seen as 0.2–0.5 s WAL syncs and slow requests
    /// while snapshots were written).
    static let syncSlice = 8 << 20

    /// Writes `snapshot` atomically into `directory`: after this returns the file
    /// is durable under its final name; after a crash before that, either the old
    /// set of snapshot files or the new one is visible, never a partial file under
    /// a final name (the temp file is removed if writing it fails).
    @discardableResult
    static func write(_ snapshot: Snapshot, directory: String) throws(WALError) -> Name {
        try write(metadata: snapshot.metadata, dataLength: snapshot.data.count, directory: directory) { sink in
            sink(snapshot.data)
        }
    }

    /// ``write(_:directory:)`` for data produced in chunks, exactly
    /// `dataLength` bytes of it: `produce` calls its sink with each chunk
    /// (which returns false once writing failed) and returns whether every
    /// chunk was taken. The state is never held whole. The header, whose
    /// checksum covers the data, is written last, before the file is synced
    /// and renamed; the data goes out in synced slices as in ``write(_:directory:)``.
    @discardableResult
    static func write(
        metadata: SnapshotMetadata, dataLength: Int, directory: String,
        produce: (_ sink: @escaping ([UInt8]) -> Bool) -> Bool
    ) throws(WALError) -> Name {
        let name = Name(term: metadata.term, index: metadata.index)
        let finalPath = FileIO.joined(directory, name.fileName)
        let tempPath = finalPath + tempSuffix
        let fields = try fields(metadata, dataLength: dataLength)
        // Front to back, bypassing the page cache where it can
        // (``DirectFileWriter``); the header, whose checksum covers the
        // data, is patched in last.
        let file = try DirectFileWriter(path: tempPath)
        do throws(WALError) {
            try file.append(ArraySlice(repeating: 0, count: headerLength))
            try file.append(fields[...])
            final class Progress {
                var written = 0
                var unsynced = 0
                var crc: UInt32 = 0
                var failure: WALError?
                /// `produce` returned: a sink kept beyond it writes nothing.
                var closed = false
            }
            let progress = Progress()
            progress.crc = CRC32C.checksum(fields)
            defer { progress.closed = true }
            let complete = produce { chunk in
                guard progress.failure == nil, !progress.closed else { return false }
                guard progress.written + chunk.count <= dataLength else {
                    progress.failure = .invalidArgument("snapshot data longer than the \(dataLength) bytes announced")
                    return false
                }
                do throws(WALError) {
                    // However large the chunk, synced every `syncSlice` bytes.
                    var start = 0
                    while start < chunk.count {
                        let end = min(start + syncSlice - progress.unsynced, chunk.count)
                        try file.append(chunk[start..<end])
                        progress.unsynced += end - start
                        if progress.unsynced >= syncSlice {
                            try file.sync()
                            progress.unsynced = 0
                        }
                        start = end
                    }
                } catch {
                    progress.failure = error
                    return false
                }
                progress.crc = CRC32C.update(progress.crc, chunk)
                progress.written += chunk.count
                return true
            }
            if let failure = progress.failure { throw failure }
            guard complete, progress.written == dataLength else {
                throw .invalidArgument("snapshot data was \(progress.written) bytes, \(dataLength) announced")
            }
            try file.finish()
            try file.patch(header(crc: progress.crc, bodyLength: fields.count + dataLength), at: 0)
            try file.fullSync()
        } catch {
            file.close()
            try? FileIO.removeFile(tempPath)
            throw error
        }
        file.close()
        try FileIO.renameFile(tempPath, finalPath)
        try FileIO.syncDirectory(directory)
        return name
    }
}

