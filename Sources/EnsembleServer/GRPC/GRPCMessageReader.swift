/// Splits a request stream's DATA into gRPC messages. Pure, so it is fuzzed on
/// its own: bytes go in in whatever pieces HTTP/2 delivers them, whole messages
/// come out.
///
/// The gRPC wire format (PROTOCOL-HTTP2.md): each message is a 1-byte
/// compressed flag, a 4-byte big-endian length, then the message bytes.
struct GRPCMessageReader {
    enum Failure: Error, Equatable {
        /// The message would exceed the server's limit (grpc-go, in etcd,
        /// answers "grpc: received message larger than max").
        case tooLarge(Int)
        /// The compressed flag is set; this server negotiates no compression.
        case compressed
        /// A flag byte other than 0 or 1.
        case malformed
    }

    let maxMessageBytes: Int
    private var buffer: [UInt8] = []
    /// Start of the unread bytes in `buffer` (consumed bytes are dropped lazily).
    private var start = 0

    init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    /// Bytes received but not yet part of a whole message: about what the
    /// reader holds, as a large buffer is released once it drains.
    var pendingBytes: Int { buffer.count - start }

    /// Adds received bytes; returns every message they complete.
    mutating func append(_ bytes: some Sequence<UInt8>) throws(Failure) -> [[UInt8]] {
        buffer.append(contentsOf: bytes)
        var messages: [[UInt8]] = []
        while buffer.count - start >= 5 {
            let flag = buffer[start]
            guard flag == 0 else { throw flag == 1 ? .compressed : .malformed }
            var length = 0
            for i in 1...4 { length = length << 8 | Int(buffer[start + i]) }
            guard length <= maxMessageBytes else { throw .tooLarge(length) }
            guard buffer.count - start - 5 >= length else { break }
            messages.append(Array(buffer[(start + 5)..<(start + 5 + length)]))
            start += 5 + length
        }
        if start == buffer.count {
            // Drained: keep a small buffer for the next message, not a large
            // one's (a call between messages, or answered, holds nothing big).
            if buffer.capacity > 64 * 1024 { buffer = [] } else { buffer.removeAll(keepingCapacity: true) }
            start = 0
        } else if start > 64 * 1024 {
            buffer.removeFirst(start)
            start = 0
        }
        return messages
    }
}
