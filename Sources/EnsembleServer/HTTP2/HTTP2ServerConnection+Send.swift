import NIOCore

/// The sending side: response headers, DATA within the peer's windows, and
/// trailers that end a stream once the DATA before them is out.
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
        guard failure == nil, var stream = streams[id] else {
            if let promise { written.append(promise) }
            return
        }
        if stream.queue.isEmpty {
            var data = data
            writeData(stream: id, &stream, &data)
            if data.readableBytes == 0 {
                streams[id] = stream
                if let promise { written.append(promise) }
                return
            }
            stream.queue.append(.data(data, promise))
            blocked.append(id)
        } else {
            stream.queue.append(.data(data, promise))
        }
        streams[id] = stream
    }

    /// Ends the stream with trailers, after any DATA still queued.
    mutating func sendTrailers(stream id: UInt32, block: ByteBuffer) {
        guard failure == nil, streams[id] != nil else { return }
        if streams[id]?.queue.isEmpty == false {
            streams[id]?.queue.append(.trailers(block))
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

    /// Sends what windows now allow from blocked streams, oldest first.
    mutating func sendBlocked() {
        guard failure == nil, !blocked.isEmpty else { return }
        let waiting = blocked
        blocked = []
        for id in waiting {
            guard var stream = streams[id] else { continue }
            var finished = false
            drain: while let next = stream.queue.popFirst() {
                switch next {
                case .data(var data, let promise):
                    writeData(stream: id, &stream, &data)
                    if data.readableBytes > 0 {
                        stream.queue.prepend(.data(data, promise))
                        break drain
                    }
                    if let promise { written.append(promise) }
                case let .trailers(block):
                    writeHeaderBlock(stream: id, block, endStream: true)
                    finished = true
                    break drain
                }
            }
            streams[id] = stream
            if finished {
                finishSending(id)
            } else if !stream.queue.isEmpty {
                blocked.append(id)
            }
        }
    }

    /// Frames as much of `data` as the windows and the peer's frame size allow.
    private mutating func writeData(stream id: UInt32, _ stream: inout Stream, _ data: inout ByteBuffer) {
        while data.readableBytes > 0 {
            let n = min(data.readableBytes, stream.sendWindow, connectionSendWindow, peerMaxFrameSize)
            guard n > 0, var chunk = data.readSlice(length: n) else { return }
            HTTP2Wire.writeFrameHeader(&output, length: n, type: .data, stream: id)
            output.writeBuffer(&chunk)
            stream.sendWindow -= n
            connectionSendWindow -= n
        }
    }

    /// HEADERS, then CONTINUATION frames if the block exceeds the peer's frame size.
    private mutating func writeHeaderBlock(stream id: UInt32, _ block: ByteBuffer, endStream: Bool) {
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
