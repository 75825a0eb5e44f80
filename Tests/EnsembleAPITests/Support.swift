import Foundation
import Raft
import SwiftProtobuf
import Testing

/// Lower-case hex of `bytes`, no separators.
func hexString(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef")
    var out = ""
    for byte in bytes {
        out.append(digits[Int(byte >> 4)])
        out.append(digits[Int(byte & 0x0f)])
    }
    return out
}

/// Bytes of a hex string (even length, no separators); traps on bad input,
/// which in this target only ever comes from literals.
func bytes(hex: String) -> [UInt8] {
    let chars = Array(hex.utf8)
    precondition(chars.count.isMultiple(of: 2), "odd-length hex literal")
    func nibble(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: preconditionFailure("bad hex digit")
        }
    }
    return stride(from: 0, to: chars.count, by: 2).map { nibble(chars[$0]) << 4 | nibble(chars[$0 + 1]) }
}

func data(_ string: String) -> Data { Data(string.utf8) }

/// Checks one golden case three ways:
/// - `message` (built in Swift) serializes to exactly `hex`;
/// - `hex` decodes back to `message`;
/// - `text` (the text-format input that `protoc --encode` turned into `hex`)
///   parses to `message`, so the Swift construction and the golden input agree.
func expectGolden<M: SwiftProtobuf.Message & Equatable>(
    _ message: M,
    text: String,
    hex: String,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let encoded: [UInt8] = try message.serializedBytes()
    #expect(hexString(encoded) == hex, "serialized bytes differ from protoc's", sourceLocation: sourceLocation)
    let decoded = try M(serializedBytes: bytes(hex: hex))
    #expect(decoded == message, "golden bytes decode to a different message", sourceLocation: sourceLocation)
    let parsed = try M(textFormatString: text)
    #expect(parsed == message, "text-format input differs from the Swift construction", sourceLocation: sourceLocation)
}

