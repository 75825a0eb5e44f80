import NIOCore

/// A frame as the tests write and read them.
struct TestFrame: Equatable, CustomStringConvertible {
    var type: UInt8
    var flags: UInt8 = 0
    var stream: UInt32
    var payload: [UInt8] = []

    var description: String { "frame(type \(type), flags \(flags), stream \(stream), \(payload.count) bytes)" }

    func encoded() -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, flags,
                UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
    }

    static func parse(_ bytes: [UInt8]) -> [TestFrame] {
        var frames: [TestFrame] = []
        var i = 0
        while i + 9 <= bytes.count {
            let n = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            let stream = UInt32(bytes[i + 5] & 0x7F) << 24 | UInt32(bytes[i + 6]) << 16 | UInt32(bytes[i + 7]) << 8 | UInt32(bytes[i + 8])
            frames.append(TestFrame(type: bytes[i + 3], flags: bytes[i + 4], stream: stream, payload: Array(bytes[i + 9..<min(i + 9 + n, bytes.count)])))
            i += 9 + n
        }
        return frames
    }

    static func settings(_ values: [(UInt16, UInt32)]) -> TestFrame {
        TestFrame(type: 4, stream: 0, payload: values.flatMap { id, value in
            [UInt8(id >> 8), UInt8(id & 0xFF), UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
        })
    }

    static func windowUpdate(_ stream: UInt32, _ increment: UInt32) -> TestFrame {
        TestFrame(type: 8, stream: stream, payload: [UInt8(increment >> 24), UInt8(increment >> 16 & 0xFF), UInt8(increment >> 8 & 0xFF), UInt8(increment & 0xFF)])
    }

    var errorCode: UInt32? {
        let at = type == 7 ? 4 : 0  // GOAWAY: after the last stream id
        guard (type == 3 || type == 7), payload.count >= at + 4 else { return nil }
        return payload[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }
}
