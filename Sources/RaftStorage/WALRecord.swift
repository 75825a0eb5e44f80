import Raft

/// Record framing in a WAL segment:
///
///     length u32 LE | crc32c u32 LE | type u8 | payload
///
/// `length` counts `type + payload`; the CRC covers the same bytes. All integers
/// are little-endian.
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
    static let version: UInt8 = 1

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

    /// `length + crc` before the body.
    static let frameOverhead = 8

    /// The complete framed bytes.
    func framed() -> [UInt8] {
        var body = ByteWriter(capacity: 64)
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
            var size = 1 + 1 + 17 + 24 + 4
            for e in b.entries { size += 21 + e.data.count }
            body = ByteWriter(capacity: size)
            body.u8(WALRecordType.batch.rawValue)
            body.u8((b.hardState == nil ? 0 : 1) | (b.snapshot == nil ? 0 : 2))
            if let m = b.snapshot { body.marker(m) }
            if let hs = b.hardState { body.hardState(hs) }
            body.u32(UInt32(b.entries.count))
            for e in b.entries {
                body.u64(e.term)
                body.u64(e.index)
                body.u8(e.kind.rawValue)
                body.u32(UInt32(e.data.count))
                body.raw(e.data)
            }
        case let .snapshotMarker(m):
            body.u8(WALRecordType.snapshotMarker.rawValue)
            body.marker(m)
        }
        var out = ByteWriter(capacity: body.bytes.count + Self.frameOverhead)
        out.u32(UInt32(body.bytes.count))
        out.u32(CRC32C.checksum(body.bytes))
        out.raw(body.bytes)
        return out.bytes
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
