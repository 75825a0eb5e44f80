import NIOCore

/// The server's HPACK encoder (RFC 7541), deliberately the simplest valid one:
/// it never adds to the dynamic table, so it keeps no state and a response's
/// header block can be prepared once and reused. Every field is a literal
/// without indexing, or a static-table entry; strings are not Huffman-coded.
/// (Decoding is NIOHPACK's `HPACKDecoder`: the peer may use all of HPACK.)
package enum HPACKLiterals {
    /// A dynamic table size update to 0 (§6.3): tells the peer's decoder that
    /// this encoder's table is empty, whatever SETTINGS_HEADER_TABLE_SIZE says.
    package static let emptyTable: UInt8 = 0x20

    /// Fully indexed static entries (Appendix A): `:status: 200`,
    /// `:method: POST`, `:scheme: http`.
    package static let status200: UInt8 = 0x88
    package static let methodPOST: UInt8 = 0x83
    package static let schemeHTTP: UInt8 = 0x86

    /// Appends `name: value` as a literal without indexing (§6.2.2); `name` is
    /// taken from the static table when it is there.
    package static func append(name: String, value: String, to out: inout ByteBuffer) {
        if let index = staticNames[name] {
            appendInteger(index, prefixBits: 4, flags: 0x00, to: &out)
        } else {
            out.writeInteger(UInt8(0))
            appendString(name, to: &out)
        }
        appendString(value, to: &out)
    }

    /// The names of the static table this server sends.
    private static let staticNames: [String: Int] = [":authority": 1, ":path": 4, "content-type": 31, "user-agent": 58]

    private static func appendString(_ string: String, to out: inout ByteBuffer) {
        appendInteger(string.utf8.count, prefixBits: 7, flags: 0x00, to: &out)
        out.writeString(string)
    }

    /// An integer with an N-bit prefix (§5.1).
    package static func appendInteger(_ value: Int, prefixBits: Int, flags: UInt8, to out: inout ByteBuffer) {
        let limit = (1 << prefixBits) - 1
        if value < limit {
            out.writeInteger(flags | UInt8(value))
            return
        }
        out.writeInteger(flags | UInt8(limit))
        var rest = value - limit
        while rest >= 128 {
            out.writeInteger(UInt8(rest & 0x7F | 0x80))
            rest >>= 7
        }
        out.writeInteger(UInt8(rest))
    }
}
