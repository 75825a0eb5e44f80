import NIOCore

/// The sending side: response headers, DATA within the peer's windows, and
/// trailers that end a stream once the DATA before them is out.
///
/// Streams are changed in place in the table (`streams.values[index]`): a
/// copy taken out and written back would copy a non-empty queue on every
/// append.
extension HTTP2ServerConnection {
    /// Sends a stream's response headers (a header block from ``HPACKLiterals``).
    /// They are not flow-controlled, and go before any DATA of the stream.
    mutating func sendHeaders(stream id: UInt32, block: ByteBuffer) {
        guard failure == nil, streams[id] != nil else { return }
        writeHeaderBlock(stream: id, block, endStream: false)
    }

    /// Sends DATA as far as the windows allow; the rest waits for WINDOW_UPDATE.
    /// `promise` completes once the last byte is in ``output`` (or the stream is gone).
    mutating func sendData(stream id: UInt32, _ data: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard failure == nil, let index = streams.index(forKey: id) else {
            if let promise { written.append(promise) }
            return
        }
        guard streams.values[index].queue.isEmpty else {
            streams.values[index].queue.append(.data(data, promise))
            return
        }
        var data = data
        Self.frame(&data, stream: id, window: &streams.values[index].sendWindow, connection: &connectionSendWindow,
                   maxFrame: peerMaxFrameSize, into: &output)
        controlFrames = 0
        if data.readableBytes == 0 {
            if let promise { written.append(promise) }
        } else {
            streams.values[index].queue.append(.data(data, promise))
            blocked.append(id)
        }
    }

    /// Ends the stream with trailers, after any DATA still queued.
    mutating func sendTrailers(stream id: UInt32, block: ByteBuffer) {
        guard failure == nil, let index = streams.index(forKey: id) else { return }
        guard streams.values[index].queue.isEmpty else {
            streams.values[index].queue.append(.trailers(block))
            return
        }
        writeHeaderBlock(stream: id, block, endStream: true)
        finishSending(id)
    }

    /// The server's side is done. A client still sending is told to stop
    /// (RST_STREAM NO_ERROR, as §8.1 allows and gRPC servers do).
    private mutating func finishSending(_ id: UInt32) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        dropped(stream)
        if stream.receiving { writeReset(id, .noError) }
    }

    /// Sends what the connection window now allows from blocked streams, oldest first.
    mutating func sendBlocked() {
        guard failure == nil, !blocked.isEmpty else { return }
        let waiting = blocked
        blocked = []
        for (n, id) in waiting.enumerated() {
            // With the connection window spent, no queue can move: its head is DATA.
            guard connectionSendWindow > 0 else {
                blocked += waiting[n...].filter { streams[$0] != nil }
                return
            }
            if streams[id] != nil, sendQueued(id) { blocked.append(id) }
        }
    }

    /// Sends what the windows allow from one stream's queue; true if some is
    /// left. A stream that empties is taken off `blocked` by its caller.
    @discardableResult
    mutating func sendQueued(_ id: UInt32) -> Bool {
        guard let index = streams.index(forKey: id) else { return false }
        var trailers: ByteBuffer?
        while let next = streams.values[index].queue.first {
            if case let .trailers(block) = next {
                trailers = block
                break
            }
            guard case .data(var data, let promise) = streams.values[index].queue.removeFirst() else { break }
            Self.frame(&data, stream: id, window: &streams.values[index].sendWindow, connection: &connectionSendWindow,
                       maxFrame: peerMaxFrameSize, into: &output)
            controlFrames = 0
            if data.readableBytes > 0 {
                streams.values[index].queue.prepend(.data(data, promise))
                return true
            }
            if let promise { written.append(promise) }
        }
        if let trailers {
            writeHeaderBlock(stream: id, trailers, endStream: true)
            finishSending(id)
        }
        return false
    }

    /// Frames as much of `data` as the windows and the peer's frame size allow.
    private static func frame(
        _ data: inout ByteBuffer, stream id: UInt32, window: inout Int, connection: inout Int, maxFrame: Int,
        into output: inout ByteBuffer
    ) {
        while data.readableBytes > 0 {
            let n = min(data.readableBytes, window, connection, maxFrame)
            guard n > 0, var chunk = data.readSlice(length: n) else { return }
            HTTP2Wire.writeFrameHeader(&output, length: n, type: .data, stream: id)
            output.writeBuffer(&chunk)
            window -= n
            connection -= n
        }
    }

    /// HEADERS, then CONTINUATION frames if the block exceeds the peer's frame size.
    private mutating func writeHeaderBlock(stream id: UInt32, _ block: ByteBuffer, endStream: Bool) {
        controlFrames = 0
        var block = block
        let prefix = announceTableSize ? 1 : 0
        var first = min(block.readableBytes + prefix, peerMaxFrameSize)
        var flags = endStream ? HTTP2Wire.Flags.endStream : 0
        if first == block.readableBytes + prefix { flags |= HTTP2Wire.Flags.endHeaders }
        HTTP2Wire.writeFrameHeader(&output, length: first, type: .headers, flags: flags, stream: id)
        if announceTableSize {
            output.writeInteger(HPACKLiterals.emptyTable)
            announceTableSize = false
            first -= 1
        }
        if var chunk = block.readSlice(length: first) { output.writeBuffer(&chunk) }
        while block.readableBytes > 0 {
            let n = min(block.readableBytes, peerMaxFrameSize)
            let last = n == block.readableBytes
            HTTP2Wire.writeFrameHeader(&output, length: n, type: .continuation, flags: last ? HTTP2Wire.Flags.endHeaders : 0, stream: id)
            if var chunk = block.readSlice(length: n) { output.writeBuffer(&chunk) }
        }
    }
}
