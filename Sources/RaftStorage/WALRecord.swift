import Checksum
import Raft

/// Record framing in a WAL segment (format version 2):
///
///     length u32 | crc32c u32 | offset u64 | syncedThrough u64 | type u8 | payload
///
/// `length` counts everything after the CRC (`offset` through the payload) and
/// the CRC covers the same bytes. All integers are little-endian.
///
/// - `offset`: the record's own byte offset in its segment. A frame found at a
///   position other than the one it names is not a record written there (for
///   example a framed record inside some entry's data).
/// - `syncedThrough`: the segment's durable length when the record was written
///   (everything before it had survived an fdatasync; always `<= offset`).
///   Recovery uses it to tell a torn group-commit batch from corruption: damage
///   at `D` is corruption only if a later record says `syncedThrough > D`.
enum WALRecordType: UInt8 {
    /// First record of every segment: ``SegmentHeader``.
    case segmentHeader = 1
    /// One Ready's persistence unit: optional hard state plus entries (``Batch``).
    case batch = 2
    /// A snapshot was saved here: ``SnapshotMarker``.
    case snapshotMarker = 3
}

/// Carried by the first record of every segment, so that deleting older segments
/// never loses the hard state or the point the log continues from.
///
/// Payload: `magic u32 | version u8 | sequence u64 | firstIndex u64 |
/// snapshotIndex u64 | snapshotTerm u64 | term u64 | vote u64 | commit u64`.
struct SegmentHeader: Equatable {
    static let magic: UInt32 = 0x5753_4E45  // "ENSW" read as little-endian
    /// 2: frames carry `offset` and `syncedThrough` (see ``WALRecord``).
    static let version: UInt8 = 2

    var sequence: UInt64
    /// `lastIndex + 1` of the log when the segment was created.
    var firstIndex: UInt64
    /// The snapshot in effect when the segment was created.
    var snapshotIndex: UInt64
    var snapshotTerm: UInt64
    /// The hard state as of the segment's creation.
    var hardState: HardState
}

/// The records of one `Ready`, written as one CRC-protected unit so a crash keeps
/// either all of it or none (a follower must never keep entry N+1 without the
/// commit index that arrived with it, or vice versa; nor a received snapshot
/// without the hard state whose commit covers it).
///
/// Payload: `flags u8 (bit 0: has hard state, bit 1: has snapshot) |
/// [snapshot: index u64 | term u64 | mode u8] | [term u64 | vote u64 | commit u64] |
/// count u32 | count × (term u64 | index u64 | kind u8 | dataLength u32 | data)`.
/// Entries are contiguous and ascending. Applied in the order snapshot, entries,
/// hard state (the `Ready` order).
struct Batch: Equatable {
    var snapshot: SnapshotMarker? = nil
    var hardState: HardState?
    var entries: [Entry]
}

/// Written after a snapshot file is durable: the log was cut at `index`/`term`.
/// A record of its own for ``DiskStorage/saveSnapshot(_:)``, or part of a
/// ``Batch`` for a `Ready` that carries a snapshot. Payload: `index u64 | term u64 | mode u8`.
struct SnapshotMarker: Equatable {
    enum Mode: UInt8 {
        /// The log held `index` with `term`: entries after it are kept (a member's
        /// own snapshot, or a received one that matches its log).
        case keepLog = 0
        /// The log did not match: it was replaced by the snapshot (a follower
        /// installing the leader's snapshot).
        case replaceLog = 1
    }

    var index: UInt64
    var term: UInt64
    var mode: Mode
}

enum WALRecord: Equatable {
    case segmentHeader(SegmentHeader)
    case batch(Batch)
    case snapshotMarker(SnapshotMarker)

    /// `length + crc` before the checksummed part.
    static let frameOverhead = 8
    /// `offset + syncedThrough` between the CRC and the type byte.
    static let positionLength = 16
    /// Where the type byte sits in a frame.
    static let typeOffset = frameOverhead + positionLength
    /// The smallest value the length field can hold: positions plus a type byte.
    static let minimumLength = positionLength + 1

    /// Size of the framed record. Throws ``WALError/invalidArgument(_:)`` when a
    /// count or length does not fit its u32 field; call it before ``frame(into:offset:syncedThrough:)``.
    func framedLength() throws(WALError) -> Int {
        switch self {
        case .segmentHeader:
            return Self.typeOffset + 1 + 4 + 1 + 4 * 8 + 24
        case let .batch(b):
            let body = try Self.batchLength(
                hasSnapshot: b.snapshot != nil, hasHardState: b.hardState != nil,
                entryDataLengths: b.entries.lazy.map(\.data.count))
            return Self.frameOverhead + body
        case .snapshotMarker:
            return Self.typeOffset + 1 + 17
        }
    }

    /// The length field of a batch record (everything after the CRC) with the
    /// given entry data sizes; throws ``WALError/invalidArgument(_:)`` once a
    /// count, an entry or the whole record exceeds the u32 limit (checking
    /// stops there, so a huge count costs nothing).
    static func batchLength<C: Collection>(
        hasSnapshot: Bool, hasHardState: Bool, entryDataLengths: C
    ) throws(WALError) -> Int where C.Element == Int {
        _ = try checkedU32(entryDataLengths.count, "batch entry count")
        var length = minimumLength + 1 + (hasSnapshot ? 17 : 0) + (hasHardState ? 24 : 0) + 4
        for dataLength in entryDataLengths {
            _ = try checkedU32(dataLength, "entry data length")
            length += 21 + dataLength  // cannot overflow: both terms are below 2^33
            if length > Int(UInt32.max) {
                throw .invalidArgument("batch record exceeds the 4 GiB record limit (\(entryDataLengths.count) entries)")
            }
        }
        return length
    }

    /// The complete framed bytes (for tests and segment headers).
    func framed(offset: Int = 0, syncedThrough: Int = 0) -> [UInt8] {
        var out: [UInt8] = []
        frame(into: &out, offset: offset, syncedThrough: syncedThrough)
        return out
    }

    /// Appends the framed record to `out`: the body is encoded in place and the
    /// length and CRC patched in front of it, so a reused buffer makes framing
    /// allocation-free on the hot path. `offset` is where the frame will sit in
    /// its segment and `syncedThrough` the segment's durable length.
    ///
    /// Requires that ``framedLength()`` did not throw (u32 fields are not re-checked).
    func frame(into out: inout [UInt8], offset: Int, syncedThrough: Int) {
        let start = out.count
        var body = ByteWriter(reusing: out)
        out = []
        body.u32(0)  // length, patched below
        body.u32(0)  // CRC, patched below
        body.u64(UInt64(truncatingIfNeeded: offset))
        body.u64(UInt64(truncatingIfNeeded: syncedThrough))
        switch self {
        case let .segmentHeader(h):
            body.u8(WALRecordType.segmentHeader.rawValue)
            body.u32(SegmentHeader.magic)
            body.u8(SegmentHeader.version)
            body.u64(h.sequence)
            body.u64(h.firstIndex)
            body.u64(h.snapshotIndex)
            body.u64(h.snapshotTerm)
            body.hardState(h.hardState)
        case let .batch(b):
            var size = Self.typeOffset + 1 + 1 + 17 + 24 + 4
            for e in b.entries { size += 21 + e.data.count }
            // Grow geometrically: `out` may be a buffer collecting many records.
            if body.bytes.capacity < start + size {
                body.bytes.reserveCapacity(max(start + size, 2 * body.bytes.capacity))
            }
            body.u8(WALRecordType.batch.rawValue)
            body.u8((b.hardState == nil ? 0 : 1) | (b.snapshot == nil ? 0 : 2))
            if let m = b.snapshot { body.marker(m) }
            if let hs = b.hardState { body.hardState(hs) }
            body.u32(UInt32(truncatingIfNeeded: b.entries.count))
            for e in b.entries {
                body.u64(e.term)
                body.u64(e.index)
                body.u8(e.kind.rawValue)
                body.u32(UInt32(truncatingIfNeeded: e.data.count))
                body.raw(e.data)
            }
        case let .snapshotMarker(m):
            body.u8(WALRecordType.snapshotMarker.rawValue)
            body.marker(m)
        }
        let checked = (start + Self.frameOverhead)..<body.bytes.count
        let length = UInt32(truncatingIfNeeded: checked.count)
        let crc = CRC32C.update(0, body.bytes, range: checked)
        body.bytes.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: length.littleEndian, toByteOffset: start, as: UInt32.self)
            raw.storeBytes(of: crc.littleEndian, toByteOffset: start + 4, as: UInt32.self)
        }
        // Hand the buffer back without a second reference (no copy-on-write).
        swap(&out, &body.bytes)
    }

    /// Decodes the body (`type + payload`) at `range` of `bytes`, whose CRC has
    /// already been checked.
    static func decode(_ bytes: [UInt8], body range: Range<Int>) throws(DecodeError) -> WALRecord {
        var r = ByteReader(bytes, range: range)
        let rawType = try r.u8("record type")
        guard let type = WALRecordType(rawValue: rawType) else {
            throw DecodeError(reason: "unknown record type \(rawType)")
        }
        switch type {
        case .segmentHeader:
            let magic = try r.u32("segment magic")
            guard magic == SegmentHeader.magic else {
                throw DecodeError(reason: "bad segment header magic 0x\(String(magic, radix: 16))")
            }
            let version = try r.u8("segment version")
            guard version == SegmentHeader.version else {
                throw DecodeError(reason: "unsupported segment format version \(version)")
            }
            let header = SegmentHeader(
                sequence: try r.u64("sequence"), firstIndex: try r.u64("first index"),
                snapshotIndex: try r.u64("snapshot index"), snapshotTerm: try r.u64("snapshot term"),
                hardState: try r.hardState())
            try r.expectEnd("segment header")
            return .segmentHeader(header)
        case .batch:
            let flags = try r.u8("batch flags")
            guard flags & ~3 == 0 else { throw DecodeError(reason: "unknown batch flags 0x\(String(flags, radix: 16))") }
            let snapshot = flags & 2 != 0 ? try r.marker() : nil
            let hardState = flags & 1 != 0 ? try r.hardState() : nil
            let count = Int(try r.u32("entry count"))
            // Each entry needs at least 21 bytes: a bogus count cannot make us allocate.
            guard count <= r.remaining / 21 else {
                throw DecodeError(reason: "entry count \(count) exceeds record size")
            }
            var entries: [Entry] = []
            entries.reserveCapacity(count)
            for i in 0..<count {
                let term = try r.u64("entry term")
                let index = try r.u64("entry index")
                let rawKind = try r.u8("entry kind")
                guard let kind = Entry.Kind(rawValue: rawKind) else {
                    throw DecodeError(reason: "entry \(index) has unknown kind \(rawKind)")
                }
                let length = Int(try r.u32("entry data length"))
                let data = try r.raw(length, "entry data")
                if i > 0, let prev = entries.last, index != prev.index &+ 1 {
                    throw DecodeError(reason: "batch entries not contiguous: \(index) after \(prev.index)")
                }
                entries.append(Entry(term: term, index: index, kind: kind, data: data))
            }
            try r.expectEnd("batch")
            return .batch(Batch(snapshot: snapshot, hardState: hardState, entries: entries))
        case .snapshotMarker:
            let marker = try r.marker()
            try r.expectEnd("snapshot marker")
            return .snapshotMarker(marker)
        }
    }
}

extension ByteWriter {
    /// `index u64 | term u64 | mode u8`.
    mutating func marker(_ m: SnapshotMarker) {
        u64(m.index)
        u64(m.term)
        u8(m.mode.rawValue)
    }
}

extension ByteReader {
    mutating func marker() throws(DecodeError) -> SnapshotMarker {
        let index = try u64("snapshot index")
        let term = try u64("snapshot term")
        let rawMode = try u8("snapshot mode")
        guard let mode = SnapshotMarker.Mode(rawValue: rawMode) else {
            throw DecodeError(reason: "unknown snapshot marker mode \(rawMode)")
        }
        return SnapshotMarker(index: index, term: term, mode: mode)
    }
}
