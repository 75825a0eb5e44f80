import NIOCore

/// HTTP/2's wire vocabulary (RFC 9113 §4, §6, §7): frame types and flags,
/// error codes, settings, and the frame header.
enum HTTP2Wire {
    /// The client connection preface (§3.4).
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    static let frameHeaderLength = 9
    /// The largest frame payload before SETTINGS_MAX_FRAME_SIZE says otherwise.
    static let defaultMaxFrameSize = 16_384
    /// A window never exceeds 2^31 - 1 (§6.9.1).
    static let maxWindow = Int(Int32.max)
    /// Every window starts at this before SETTINGS change it (§6.9.2).
    static let defaultWindow = 65_535

    enum FrameType: UInt8 {
        case data = 0, headers, priority, rstStream, settings, pushPromise, ping, goAway, windowUpdate, continuation
    }

    enum Flags {
        static let endStream: UInt8 = 0x1
        static let ack: UInt8 = 0x1
        static let endHeaders: UInt8 = 0x4
        static let padded: UInt8 = 0x8
        static let priority: UInt8 = 0x20
    }

    struct ErrorCode: Equatable, Sendable, CustomStringConvertible {
        let rawValue: UInt32
        static let noError = ErrorCode(rawValue: 0)
        static let protocolError = ErrorCode(rawValue: 1)
        static let internalError = ErrorCode(rawValue: 2)
        static let flowControlError = ErrorCode(rawValue: 3)
        static let streamClosed = ErrorCode(rawValue: 5)
        static let frameSizeError = ErrorCode(rawValue: 6)
        static let refusedStream = ErrorCode(rawValue: 7)
        static let cancel = ErrorCode(rawValue: 8)
        static let compressionError = ErrorCode(rawValue: 9)
        static let enhanceYourCalm = ErrorCode(rawValue: 0xB)

        var description: String {
            let names = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
                         "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
                         "CONNECT_ERROR", "ENHANCE_YOUR_CALM"]
            return rawValue < names.count ? names[Int(rawValue)] : "0x\(String(rawValue, radix: 16))"
        }
    }

    enum Setting: UInt16 {
        case headerTableSize = 1, enablePush, maxConcurrentStreams, initialWindowSize, maxFrameSize, maxHeaderListSize
    }

    struct FrameHeader {
        var length: Int
        var type: UInt8
        var flags: UInt8
        var stream: UInt32

        /// Reads a frame header if nine bytes are there.
        static func read(from buffer: inout ByteBuffer) -> FrameHeader? {
            guard buffer.readableBytes >= frameHeaderLength,
                let high = buffer.readInteger(as: UInt8.self), let low = buffer.readInteger(as: UInt16.self),
                let type = buffer.readInteger(as: UInt8.self), let flags = buffer.readInteger(as: UInt8.self),
                let stream = buffer.readInteger(as: UInt32.self)
            else { return nil }
            return FrameHeader(length: Int(high) << 16 | Int(low), type: type, flags: flags, stream: stream & 0x7FFF_FFFF)
        }
    }

    static func writeFrameHeader(_ out: inout ByteBuffer, length: Int, type: FrameType, flags: UInt8 = 0, stream: UInt32) {
        out.writeInteger(UInt8(truncatingIfNeeded: length >> 16))
        out.writeInteger(UInt16(truncatingIfNeeded: length))
        out.writeInteger(type.rawValue)
        out.writeInteger(flags)
        out.writeInteger(stream)
    }
}
