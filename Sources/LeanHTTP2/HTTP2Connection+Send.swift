import NIOCore

/// The sending side: a client's new streams (within the server's stream
/// limit), header blocks, DATA within the peer's windows, and what ends a
/// stream once the DATA before it is out.
///
/// Streams are changed in place in the table (`streams.values[index]`): a
/// copy taken out and written back would copy a non-empty queue on every
/// append.
extension HTTP2Connection {
    /// A client opens stream `id` (odd, above every id opened before) with a
    /// request header block (``HPACKLiterals``). Beyond the server's stream
    /// limit the HEADERS wait their turn, and so does what is sent on it.
    package mutating func open(stream id: UInt32, block: ByteBuffer, endStream: Bool) {
        guard role == .client, failure == nil, !peerGoingAway, streams[id] == nil else { return }
        var stream = Stream(sendWindow: peerInitialWindow, receiveWindow: configuration.streamWindow)
        stream.ended = endStream
        if waitingToOpen.isEmpty && openedStreams < peerMaxConcurrentStreams {
            stream.sending = !endStream
            streams[id] = stream
            openedStreams += 1
            lastStreamID = id
            writeHeaderBlock(stream: id, block, endStream: endStream)
        } else {
            stream.waiting = true
            stream.queue.append(.headers(block, endStream: endStream))
            streams[id] = stream
            waitingToOpen.append(id)
        }
    }

    /// Opens waiting streams while the server's limit allows (and it is not
    /// going away: then nothing new may open, §6.8).
    mutating func openWaiting() {
        while failure == nil, !peerGoingAway, openedStreams < peerMaxConcurrentStreams, let id = waitingToOpen.popFirst() {
            guard let index = streams.index(forKey: id),
                case .headers(let block, let endStream)? = streams.values[index].queue.popFirst()
            else { continue }
            streams.values[index].waiting = false
            openedStreams += 1
            lastStreamID = id
            writeHeaderBlock(stream: id, block, endStream: endStream)
            if endStream {
                localEnded(id)
            } else if !streams.values[index].queue.isEmpty, sendQueued(id) {
                markBlocked(id)
            }
        }
    }

    /// Sends a header block on an open stream: a server's response headers,
    /// or (`endStream`) its trailers, which end the stream after any DATA
    /// still queued.
    package mutating func sendHeaders(stream id: UInt32, block: ByteBuffer, endStream: Bool = false) {
        guard failure == nil, let index = streams.index(forKey: id), !streams.values[index].ended else { return }
        if endStream { streams.values[index].ended = true }
        guard streams.values[index].queue.isEmpty else {
            streams.values[index].queue.append(.headers(block, endStream: endStream))
            return
        }
        writeHeaderBlock(stream: id, block, endStream: endStream)
        if endStream { localEnded(id) }
    }

    /// Sends DATA as far as the windows allow; the rest waits for
    /// WINDOW_UPDATE. `endStream` ends this side of the stream with the last
    /// byte. `promise` completes once the last byte is in ``output`` (or the
    /// stream is gone).
    package mutating func sendData(stream id: UInt32, _ data: ByteBuffer, endStream: Bool = false, promise: EventLoopPromise<Void>?) {
        guard failure == nil, let index = streams.index(forKey: id), !streams.values[index].ended else {
            if let promise { written.append(promise) }
            return
        }
        if endStream { streams.values[index].ended = true }
        guard streams.values[index].queue.isEmpty else {
            queuedDataBytes += data.readableBytes
            streams.values[index].queue.append(.data(data, endStream: endStream, promise))
            return
        }
        var data = data
        let before = output.writerIndex
        let done = Self.frame(&data, endStream: endStream, stream: id, window: &streams.values[index].sendWindow,
                              connection: &connectionSendWindow, maxFrame: peerMaxFrameSize, into: &output)
        if output.writerIndex != before { sentStreamFrame() }
        if done {
            if let promise { written.append(promise) }
            if endStream { localEnded(id) }
        } else {
            queuedDataBytes += data.readableBytes
            streams.values[index].queue.append(.data(data, endStream: endStream, promise))
            if streams.values[index].sendWindow > 0 { markBlocked(id) }
        }
    }

    /// A PING to learn whether the peer is still there (keepalive); its ACK,
    /// like any other frame, is the answer.
    package mutating func sendPing(_ payload: UInt64) {
        guard failure == nil else { return }
        HTTP2Wire.writeFrameHeader(&output, length: 8, type: .ping, stream: 0)
        output.writeInteger(payload)
    }

    /// Resets a stream from this side (a client giving up on a call); what
    /// is queued on it is dropped.
    package mutating func sendReset(stream id: UInt32, _ code: HTTP2Wire.ErrorCode) {
        guard failure == nil, let stream = streams[id] else { return }
        if !stream.waiting { writeReset(id, code) }
        remove(id)
    }

    /// This side's end went out. A stream the peer has ended too is gone; a
    /// server does not wait for a client that is still sending (§8.1).
    private mutating func localEnded(_ id: UInt32) {
        guard let index = streams.index(forKey: id) else { return }
        streams.values[index].sending = false
        if !streams.values[index].receiving {
            remove(id)
        } else if role == .server {
            remove(id)
            writeReset(id, .noError)
        }
    }

    /// Sends what the connection window now allows from blocked streams,
    /// oldest first; one that is cut short goes to the back. Each step sends
    /// bytes or drops an entry, so the work is bounded by what the window lets
    /// out (with the window spent, no queue can move: its head is DATA).
    mutating func sendBlocked() {
        guard failure == nil else { return }
        while connectionSendWindow > 0, let id = blocked.popFirst() {
            guard let index = streams.index(forKey: id), streams.values[index].inBlocked else { continue }
            streams.values[index].inBlocked = false
            if sendQueued(id) { markBlocked(id) }
        }
    }

    /// Puts `id` on `blocked` unless it is there. Entries of streams since
    /// removed leave only when popped, which needs connection window; a peer
    /// that keeps it at zero while resetting streams would grow the list, so
    /// it is compacted once stale entries outnumber live streams.
    mutating func markBlocked(_ id: UInt32) {
        guard let index = streams.index(forKey: id), !streams.values[index].inBlocked else { return }
        streams.values[index].inBlocked = true
        blocked.append(id)
        if blocked.count > 2 * streams.count + 64 {
            blocked = CircularBuffer(blocked.filter { streams[$0]?.inBlocked == true })
        }
    }

    /// Sends what the windows allow from one opened stream's queue; true if
    /// DATA is left that waits for the connection window (DATA held by the
    /// stream's own window waits for its WINDOW_UPDATE instead).
    @discardableResult
    mutating func sendQueued(_ id: UInt32) -> Bool {
        while let index = streams.index(forKey: id), !streams.values[index].waiting,
            let next = streams.values[index].queue.popFirst()
        {
            switch next {
            case let .headers(block, endStream):
                writeHeaderBlock(stream: id, block, endStream: endStream)
                if endStream { localEnded(id) }
            case .data(var data, let endStream, let promise):
                queuedDataBytes -= data.readableBytes
                let before = output.writerIndex
                let done = Self.frame(&data, endStream: endStream, stream: id, window: &streams.values[index].sendWindow,
                                      connection: &connectionSendWindow, maxFrame: peerMaxFrameSize, into: &output)
                // Only frames that went out reset the flood and ping counts.
                if output.writerIndex != before { sentStreamFrame() }
                guard done else {
                    queuedDataBytes += data.readableBytes
                    streams.values[index].queue.prepend(.data(data, endStream: endStream, promise))
                    return streams.values[index].sendWindow > 0
                }
                if let promise { written.append(promise) }
                if endStream { localEnded(id) }
            }
        }
        return false
    }

    /// Frames as much of `data` as the windows and the peer's frame size
    /// allow; true once all of it (and END_STREAM, if asked) is out. An empty
    /// DATA that only ends the stream needs no window.
    private static func frame(
        _ data: inout ByteBuffer, endStream: Bool, stream id: UInt32, window: inout Int, connection: inout Int,
        maxFrame: Int, into output: inout ByteBuffer
    ) -> Bool {
        if data.readableBytes == 0 && !endStream { return true }
        repeat {
            // Windows may be negative (a lowered INITIAL_WINDOW_SIZE, §6.9.2).
            let n = max(0, min(data.readableBytes, window, connection, maxFrame))
            guard n > 0 || data.readableBytes == 0, var chunk = data.readSlice(length: n) else { return false }
            let last = data.readableBytes == 0
            HTTP2Wire.writeFrameHeader(&output, length: n, type: .data, flags: last && endStream ? HTTP2Wire.Flags.endStream : 0, stream: id)
            output.writeBuffer(&chunk)
            window -= n
            connection -= n
        } while data.readableBytes > 0
        return true
    }

    /// DATA or HEADERS went out: the peer's control frames and pings start
    /// counting afresh (flood limit, ``PingPolicy``).
    private mutating func sentStreamFrame() {
        controlFrames = 0
        sentSincePing = true
    }

    /// HEADERS, then CONTINUATION frames if the block exceeds the peer's frame size.
    private mutating func writeHeaderBlock(stream id: UInt32, _ block: ByteBuffer, endStream: Bool) {
        sentStreamFrame()
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
