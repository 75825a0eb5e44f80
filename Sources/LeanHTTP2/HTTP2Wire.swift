import NIOCore

/// HTTP/2's wire vocabulary (RFC 9113 §4, §6, §7): frame types and flags,
/// error codes, settings, and the frame header.
package enum HTTP2Wire {
    /// The client connection preface (§3.4).
    package static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    package static let frameHeaderLength = 9
    /// The largest frame payload before SETTINGS_MAX_FRAME_SIZE says otherwise.
    package static let defaultMaxFrameSize = 16_384
    /// A window never exceeds 2^31 - 1 (§6.9.1).
    package static let maxWindow = Int(Int32.max)
    /// Every window starts at this before SETTINGS change it (§6.9.2).
    package static let defaultWindow = 65_535

    package enum FrameType: UInt8 {
        case data = 0, headers, priority, rstStream, settings, pushPromise, ping, goAway, windowUpdate, continuation
    }

    package enum Flags {
        package static let endStream: UInt8 = 0x1
        package static let ack: UInt8 = 0x1
        package static let endHeaders: UInt8 = 0x4
        package static let padded: UInt8 = 0x8
        package static let priority: UInt8 = 0x20
    }

    package struct ErrorCode: Equatable, Sendable, CustomStringConvertible {
        package let rawValue: UInt32
        package init(rawValue: UInt32) { self.rawValue = rawValue }
        package static let noError = ErrorCode(rawValue: 0)
        package static let protocolError = ErrorCode(rawValue: 1)
        package static let internalError = ErrorCode(rawValue: 2)
        package static let flowControlError = ErrorCode(rawValue: 3)
        package static let streamClosed = ErrorCode(rawValue: 5)
        package static let frameSizeError = ErrorCode(rawValue: 6)
        package static let refusedStream = ErrorCode(rawValue: 7)
        package static let cancel = ErrorCode(rawValue: 8)
        package static let compressionError = ErrorCode(rawValue: 9)
        package static let enhanceYourCalm = ErrorCode(rawValue: 0xB)
        package static let inadequateSecurity = ErrorCode(rawValue: 0xC)

        package var description: String {
            let names = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
                         "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
                         "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]
            return rawValue < names.count ? names[Int(rawValue)] : "0x\(String(rawValue, radix: 16))"
        }
    }

    package enum Setting: UInt16 {
        case headerTableSize = 1, enablePush, maxConcurrentStreams, initialWindowSize, maxFrameSize, maxHeaderListSize
    }

    package struct FrameHeader {
        package var length: Int
        package var type: UInt8
        package var flags: UInt8
        package var stream: UInt32

        /// Reads a frame header if nine bytes are there.
        package static func read(from buffer: inout ByteBuffer) -> FrameHeader? {
            guard buffer.readableBytes >= frameHeaderLength,
                let high = buffer.readInteger(as: UInt8.self), let low = buffer.readInteger(as: UInt16.self),
                let type = buffer.readInteger(as: UInt8.self), let flags = buffer.readInteger(as: UInt8.self),
                let stream = buffer.readInteger(as: UInt32.self)
            else { return nil }
            return FrameHeader(length: Int(high) << 16 | Int(low), type: type, flags: flags, stream: stream & 0x7FFF_FFFF)
        }
    }

    package static func writeFrameHeader(_ out: inout ByteBuffer, length: Int, type: FrameType, flags: UInt8 = 0, stream: UInt32) {
        out.writeInteger(UInt8(truncatingIfNeeded: length >> 16))
        out.writeInteger(UInt16(truncatingIfNeeded: length))
        out.writeInteger(type.rawValue)
        out.writeInteger(flags)
        out.writeInteger(stream)
    }
}
