/// Protobuf's wire format, for the few messages the hot path reads and writes
/// without SwiftProtobuf (``PutWire``).
enum ProtoWire {
    enum WireType: UInt64 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
    }

    static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    static func varintSize(_ value: UInt64) -> Int {
        value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    /// A varint field, left out when zero (proto3's default).
    static func appendField(_ field: UInt8, varint value: UInt64, to bytes: inout [UInt8]) {
        guard value != 0 else { return }
        bytes.append(field << 3)
        appendVarint(value, to: &bytes)
    }

    static func fieldSize(varint value: UInt64) -> Int {
        value == 0 ? 0 : 1 + varintSize(value)
    }
}

/// Reads protobuf wire format (tags, varints, length-delimited fields) from a
/// range of bytes, never past it. Every read returns nil on malformed or
/// truncated input.
struct ProtoWireReader {
    typealias WireType = ProtoWire.WireType

    private let bytes: [UInt8]
    private var position: Int
    private let end: Int

    init(_ bytes: [UInt8], in range: Range<Int>) {
        self.bytes = bytes
        position = range.lowerBound
        end = range.upperBound
    }

    var isAtEnd: Bool { position >= end }

    /// A varint of at most ten bytes whose value fits in 64 bits.
    mutating func varint() -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while position < end {
            let byte = bytes[position]
            position += 1
            if shift == 63 && byte > 1 { return nil }
            value |= UInt64(byte & 0x7f) << shift
            if byte < 0x80 { return value }
            shift += 7
            if shift > 63 { return nil }
        }
        return nil
    }

    /// A field's number (1 to 2²⁹−1) and wire type.
    mutating func tag() -> (field: UInt64, wireType: WireType)? {
        guard let tag = varint(), tag <= UInt64(UInt32.max), let wireType = WireType(rawValue: tag & 7) else { return nil }
        let field = tag >> 3
        return field == 0 ? nil : (field, wireType)
    }

    /// The range of a length-delimited field's payload, which is skipped.
    mutating func lengthDelimited() -> Range<Int>? {
        guard let length = varint(), length <= UInt64(end - position) else { return nil }
        let start = position
        position += Int(length)
        return start..<position
    }

    /// Skips a field's payload; groups are not skipped (nil).
    mutating func skip(_ wireType: WireType) -> Bool {
        switch wireType {
        case .varint: return varint() != nil
        case .lengthDelimited: return lengthDelimited() != nil
        case .fixed64: return advance(8)
        case .fixed32: return advance(4)
        case .startGroup, .endGroup: return false
        }
    }

    private mutating func advance(_ count: Int) -> Bool {
        guard end - position >= count else { return false }
        position += count
        return true
    }
}
