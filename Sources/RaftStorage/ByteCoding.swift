import Raft

/// Appends little-endian fixed-width integers and raw bytes.
struct ByteWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    /// Continues writing at the end of `existing` (which the caller gives up).
    init(reusing existing: [UInt8]) { bytes = existing }

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    mutating func u32(_ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func u64(_ v: UInt64) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func raw(_ v: [UInt8]) { bytes.append(contentsOf: v) }

    /// `term, vote, commit` as three u64.
    mutating func hardState(_ hs: HardState) {
        u64(hs.term)
        u64(hs.vote)
        u64(hs.commit)
    }
}

/// Why bytes could not be decoded; the caller adds file and offset.
struct DecodeError: Error {
    let reason: String
}

/// Reads little-endian fixed-width integers from `bytes[position..<end]`.
struct ByteReader {
    let bytes: [UInt8]
    private(set) var position: Int
    let end: Int

    init(_ bytes: [UInt8], range: Range<Int>) {
        self.bytes = bytes
        self.position = range.lowerBound
        self.end = range.upperBound
    }

    init(_ bytes: [UInt8]) { self.init(bytes, range: 0..<bytes.count) }

    var remaining: Int { end - position }
    var isAtEnd: Bool { position == end }

    private mutating func need(_ n: Int, _ what: String) throws(DecodeError) {
        if n > remaining { throw DecodeError(reason: "truncated \(what): need \(n) bytes, \(remaining) left") }
    }

    mutating func u8(_ what: String = "u8") throws(DecodeError) -> UInt8 {
        try need(1, what)
        defer { position += 1 }
        return bytes[position]
    }

    mutating func u32(_ what: String = "u32") throws(DecodeError) -> UInt32 {
        try need(4, what)
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(bytes[position + i]) << (8 * UInt32(i)) }
        position += 4
        return v
    }

    mutating func u64(_ what: String = "u64") throws(DecodeError) -> UInt64 {
        try need(8, what)
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
        position += 8
        return v
    }

    mutating func raw(_ count: Int, _ what: String = "bytes") throws(DecodeError) -> [UInt8] {
        try need(count, what)
        defer { position += count }
        return Array(bytes[position..<(position + count)])
    }

    mutating func hardState() throws(DecodeError) -> HardState {
        HardState(term: try u64("hard state term"), vote: try u64("hard state vote"), commit: try u64("hard state commit"))
    }

    func expectEnd(_ what: String) throws(DecodeError) {
        if !isAtEnd { throw DecodeError(reason: "\(remaining) unexpected trailing bytes after \(what)") }
    }
}

/// Reads a little-endian u32 at `offset` (caller checks bounds).
@inline(__always)
func readU32LE(_ bytes: [UInt8], at offset: Int) -> UInt32 {
    UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16
        | UInt32(bytes[offset + 3]) << 24
}

/// Reads a little-endian u64 at `offset` (caller checks bounds).
@inline(__always)
func readU64LE(_ bytes: [UInt8], at offset: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<8 { v |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
    return v
}

/// `value` as a u32 field of the on-disk format, or ``WALError/invalidArgument(_:)``
/// naming `what` when it does not fit: sizes are checked before anything is
/// encoded, so an oversized record or snapshot is refused instead of trapping.
func checkedU32(_ value: Int, _ what: String) throws(WALError) -> UInt32 {
    guard let v = UInt32(exactly: value) else {
        throw .invalidArgument("\(what) \(value) exceeds the format's limit of \(UInt32.max)")
    }
    return v
}

/// Fixed-width lowercase hex, as used in file names.
func hex16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 16 - s.count)) + s
}

/// Parses exactly 16 lowercase hex digits.
func parseHex16<S: StringProtocol>(_ s: S) -> UInt64? {
    guard s.utf8.count == 16, s.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
        return nil
    }
    return UInt64(s, radix: 16)
}
