import NIOCore

/// Splits a response stream's DATA into gRPC messages. Pure: bytes go in in
/// whatever pieces HTTP/2 delivers them, whole messages come out, so it is
/// tested at every byte boundary on its own.
///
/// The wire format (gRPC's PROTOCOL-HTTP2.md): each message is a 1-byte
/// compressed flag, a 4-byte big-endian length, then the message bytes.
///
/// A message is copied once, from the received buffers into the `[UInt8]`
/// handed out; when a DATA frame holds whole messages (the common case) they are
/// read straight from it.
struct GRPCMessageSplitter {
    enum Failure: Error, Equatable {
        /// The length prefix announces more than `maxMessageBytes`. Refused as
        /// soon as the prefix is read, before the bytes arrive.
        case tooLarge(length: Int, limit: Int)
        /// The compressed flag is set, but this client negotiates no compression.
        case compressed
        /// A flag byte other than 0 or 1.
        case malformedFlag(UInt8)
    }

    let maxMessageBytes: Int
    /// Bytes of a message not yet complete (at most one prefix and one message).
    private var partial: ByteBuffer?

    init(maxMessageBytes: Int) {
        self.maxMessageBytes = maxMessageBytes
    }

    /// Bytes received but not yet part of a whole message.
    var pendingBytes: Int { partial?.readableBytes ?? 0 }

    /// Adds received bytes; returns every message they complete, in order.
    mutating func append(_ received: ByteBuffer) throws(Failure) -> [[UInt8]] {
        var input: ByteBuffer
        // Taken, not copied: appending to a copy that shares storage with
        // `partial` would copy all of it for every piece received.
        if var pending = partial.take(), pending.readableBytes > 0 {
            pending.writeImmutableBuffer(received)
            input = pending
        } else {
            input = received
        }
        var messages: [[UInt8]] = []
        while let flag = input.getInteger(at: input.readerIndex, as: UInt8.self),
            let length = input.getInteger(at: input.readerIndex + 1, as: UInt32.self)
        {
            guard flag == 0 else { throw flag == 1 ? .compressed : .malformedFlag(flag) }
            guard Int(length) <= maxMessageBytes else { throw .tooLarge(length: Int(length), limit: maxMessageBytes) }
            guard input.readableBytes >= 5 + Int(length) else { break }
            input.moveReaderIndex(forwardBy: 5)
            guard let message = input.readBytes(length: Int(length)) else { break }
            messages.append(message)
        }
        if input.readableBytes > 0 { partial = input }
        return messages
    }
}
