import NIOCore
import NIOHPACK

/// The receiving side: frames parsed out of whatever bytes arrive, checked
/// against RFC 9113, and turned into events, answers and window credit.
extension HTTP2Connection {
    /// `now` dates resets for the rapid-reset limit.
    package mutating func receive(_ incoming: inout ByteBuffer, into events: inout [Event], now: NIODeadline = .now()) {
        guard failure == nil else { return }
        self.now = now
        if pending.readableBytes == 0 {
            pending = incoming
        } else {
            pending.writeBuffer(&incoming)
        }
        incoming.moveReaderIndex(to: incoming.writerIndex)
        if !prefaceSeen {
            guard pending.readableBytes >= HTTP2Wire.preface.count else { return }
            guard pending.readBytes(length: HTTP2Wire.preface.count) == HTTP2Wire.preface else {
                return fail(.protocolError, "bad connection preface")
            }
            prefaceSeen = true
        }
        while failure == nil, pending.readableBytes >= HTTP2Wire.frameHeaderLength {
            let length = Int(pending.getInteger(at: pending.readerIndex, as: UInt8.self) ?? 0) << 16
                | Int(pending.getInteger(at: pending.readerIndex + 1, as: UInt16.self) ?? 0)
            // This side never raises SETTINGS_MAX_FRAME_SIZE.
            guard length <= HTTP2Wire.defaultMaxFrameSize else {
                return fail(.frameSizeError, "frame of \(length) bytes")
            }
            guard pending.readableBytes >= HTTP2Wire.frameHeaderLength + length,
                let header = HTTP2Wire.FrameHeader.read(from: &pending),
                let payload = pending.readSlice(length: length)
            else { break }
            process(header, payload, into: &events)
        }
        if pending.readableBytes == 0 {
            pending = ByteBuffer()
        } else {
            pending.discardReadBytes()
        }
    }

    private mutating func process(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer, into events: inout [Event]) {
        if let continuing, header.type != HTTP2Wire.FrameType.continuation.rawValue || header.stream != continuing.stream {
            return fail(.protocolError, "expected CONTINUATION of stream \(continuing.stream)")
        }
        if !settingsSeen {
            guard header.type == HTTP2Wire.FrameType.settings.rawValue, header.flags & HTTP2Wire.Flags.ack == 0 else {
                return fail(.protocolError, "the first frame is not SETTINGS")
            }
            settingsSeen = true
        }
        guard let type = HTTP2Wire.FrameType(rawValue: header.type) else { return }  // unknown types are ignored (§5.5)
        switch type {
        case .data: receiveData(header, payload, into: &events)
        case .headers: receiveHeaders(header, payload, into: &events)
        case .priority:
            // Priorities are advice this side ignores (RFC 9113 deprecates them), but the frame's form is checked.
            if header.stream == 0 { return fail(.protocolError, "PRIORITY on stream 0") }
            if header.length != 5 { fail(.frameSizeError, "PRIORITY of \(header.length) bytes") }
        case .rstStream: receiveReset(header, payload, into: &events)
        case .settings: receiveSettings(header, payload)
        case .pushPromise: fail(.protocolError, "PUSH_PROMISE (push is off)")
        case .ping: receivePing(header, payload)
        case .goAway: receiveGoAway(header, payload, into: &events)
        case .windowUpdate: receiveWindowUpdate(header, payload, into: &events)
        case .continuation: receiveContinuation(header, payload, into: &events)
        }
    }

    /// Counts a PING or SETTINGS; too many with nothing sent between them is a flood.
    private mutating func countControlFrame() -> Bool {
        if let start = controlPeriodStart, now - start < Self.controlPeriod {
            controlFrames += 1
        } else {
            controlPeriodStart = now
            controlFrames = 1
        }
        guard controlFrames <= Self.maxControlFrames else {
            fail(.enhanceYourCalm, "too many control frames")
            return false
        }
        return true
    }

    /// Whether `id` names a stream that was never opened (§5.1 "idle"):
    /// only clients open streams, and their ids are odd and rising.
    private func isIdle(_ id: UInt32) -> Bool { id > lastStreamID || id & 1 == 0 }

    /// Strips padding (§6.1, §6.2); nil when the padding is longer than the frame.
    private func unpadded(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer, skipping extra: Int = 0) -> ByteBuffer? {
        var payload = payload
        var padding = 0
        if header.flags & HTTP2Wire.Flags.padded != 0 {
            guard let length = payload.readInteger(as: UInt8.self) else { return nil }
            padding = Int(length)
        }
        guard payload.readableBytes >= padding + extra else { return nil }
        payload.moveReaderIndex(forwardBy: extra)
        return payload.readSlice(length: payload.readableBytes - padding)
    }

    private mutating func receiveHeaders(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer, into events: inout [Event]) {
        guard header.stream != 0 else { return fail(.protocolError, "HEADERS on stream 0") }
        let priority = header.flags & HTTP2Wire.Flags.priority != 0 ? 5 : 0
        guard let fragment = unpadded(header, payload, skipping: priority) else {
            return fail(.protocolError, "padding longer than the frame")
        }
        let endStream = header.flags & HTTP2Wire.Flags.endStream != 0
        if header.flags & HTTP2Wire.Flags.endHeaders != 0 {
            headersComplete(stream: header.stream, endStream: endStream, block: fragment, into: &events)
        } else {
            continuing = (header.stream, endStream, fragment, 1)
        }
    }

    private mutating func receiveContinuation(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer, into events: inout [Event]) {
        guard var continuing else { return fail(.protocolError, "CONTINUATION without HEADERS") }
        var payload = payload
        continuing.block.writeBuffer(&payload)
        continuing.frames += 1
        // A block may not grow, or go on, without bound while its end never comes.
        // (As far as the decoder goes: a larger list fails its stream alone.)
        guard continuing.block.readableBytes <= 4 * configuration.maxHeaderListSize + HTTP2Wire.defaultMaxFrameSize,
            continuing.frames <= Self.maxHeaderFrames
        else {
            return fail(.enhanceYourCalm, "header block too large")
        }
        if header.flags & HTTP2Wire.Flags.endHeaders != 0 {
            self.continuing = nil
            headersComplete(stream: continuing.stream, endStream: continuing.endStream, block: continuing.block, into: &events)
        } else {
            self.continuing = continuing
        }
    }

    private mutating func headersComplete(stream id: UInt32, endStream: Bool, block: ByteBuffer, into events: inout [Event]) {
        // Every block is decoded, even one for a stream refused or gone, to
        // keep the HPACK dynamic table in step with the peer's.
        var block = block
        let headers: HPACKHeaders
        do {
            headers = try decoder.decodeHeaders(from: &block)
        } catch {
            return fail(.compressionError, "header block: \(error)")
        }
        if let index = streams.index(forKey: id), !streams.values[index].waiting {
            guard streams.values[index].receiving else { return reset(id, .streamClosed, into: &events) }
            // A server hears only trailers after the request headers, and they
            // end the request. (Only a server checks what it receives: its
            // own client trusts its server.)
            if role == .server {
                let (valid, size) = RequestHeaderRules.inspect(headers, trailers: true)
                if !endStream || !valid || size > configuration.maxHeaderListSize {
                    return reset(id, .protocolError, into: &events)
                }
            }
            if endStream { peerEnded(id, at: index) }
            events.append(.headers(stream: id, headers, endStream: endStream))
            return
        }
        if role == .client || id & 1 == 0 {
            if isIdle(id) { fail(.protocolError, "HEADERS on idle stream \(id)") }
            return  // a stream already closed: ignored
        }
        // A stream id at or below the last one is closed (implicitly, if it
        // was skipped). Ignoring HEADERS opening it left the client's call
        // hanging until its deadline; Go's servers end the whole connection.
        // A reset of that stream alone ends the call and spares the others
        // (frames on a stream this side reset may still be in flight, §5.1).
        guard id > lastStreamID else { return writeReset(id, .streamClosed) }
        lastStreamID = id
        if goingAway { return writeReset(id, .refusedStream) }
        guard streams.count < configuration.maxConcurrentStreams else {
            writeReset(id, .refusedStream)
            countReset()
            return
        }
        // A malformed request (§8.1.1), or one over the advertised header
        // list size, fails its stream alone.
        let (valid, size) = RequestHeaderRules.inspect(headers)
        guard valid, size <= configuration.maxHeaderListSize else {
            writeReset(id, .protocolError)
            countReset()
            return
        }
        var stream = Stream(sendWindow: peerInitialWindow, receiveWindow: configuration.streamWindow)
        stream.receiving = !endStream
        streams[id] = stream
        events.append(.opened(stream: id, headers, endStream: endStream))
    }

    /// The peer ended its side; a stream both sides have ended is gone.
    private mutating func peerEnded(_ id: UInt32, at index: Dictionary<UInt32, Stream>.Index) {
        streams.values[index].receiving = false
        if !streams.values[index].sending { remove(id) }
    }

    private mutating func receiveData(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer, into events: inout [Event]) {
        guard header.stream != 0 else { return fail(.protocolError, "DATA on stream 0") }
        // The whole frame, padding included, counts against both windows (§6.9.1).
        guard header.length <= connectionReceiveWindow else { return fail(.flowControlError, "connection window exceeded") }
        connectionReceiveWindow -= header.length
        if connectionReceiveWindow <= configuration.connectionWindow / 2 {
            writeWindowUpdate(stream: 0, configuration.connectionWindow - connectionReceiveWindow)
            connectionReceiveWindow = configuration.connectionWindow
        }
        guard let data = unpadded(header, payload) else { return fail(.protocolError, "padding longer than the frame") }
        let endStream = header.flags & HTTP2Wire.Flags.endStream != 0
        let id = header.stream
        guard let index = streams.index(forKey: id), !streams.values[index].waiting else {
            if isIdle(id) { fail(.protocolError, "DATA on idle stream \(id)") }
            return
        }
        // Empty DATA that does not end the stream means nothing; many are a
        // flood. (Padding alone is not empty: it counts against the windows.)
        if header.length == 0 && !endStream {
            emptyDataFrames += 1
            if emptyDataFrames > Self.maxEmptyDataFrames { fail(.enhanceYourCalm, "too many empty DATA frames") }
            return
        }
        emptyDataFrames = 0
        guard streams.values[index].receiving else { return reset(id, .streamClosed, into: &events) }
        streams.values[index].receiveWindow -= header.length
        let window = streams.values[index].receiveWindow
        guard window >= 0 else { return reset(id, .flowControlError, into: &events) }
        if endStream {
            peerEnded(id, at: index)
        } else if window <= configuration.streamWindow / 2 {
            writeWindowUpdate(stream: id, configuration.streamWindow - window)
            streams.values[index].receiveWindow = configuration.streamWindow
        }
        if data.readableBytes > 0 || endStream { events.append(.data(stream: id, data, endStream: endStream)) }
    }

    private mutating func receiveReset(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer, into events: inout [Event]) {
        guard header.length == 4 else { return fail(.frameSizeError, "RST_STREAM of \(header.length) bytes") }
        guard header.stream != 0, !isIdle(header.stream) else {
            return fail(.protocolError, "RST_STREAM on idle stream \(header.stream)")
        }
        var payload = payload
        let code = HTTP2Wire.ErrorCode(rawValue: payload.readInteger(as: UInt32.self) ?? 0)
        if remove(header.stream) != nil {
            events.append(.reset(stream: header.stream, code))
            countReset()
        }
    }

    private mutating func receiveSettings(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer) {
        guard header.stream == 0 else { return fail(.protocolError, "SETTINGS on a stream") }
        if header.flags & HTTP2Wire.Flags.ack != 0 {
            if header.length != 0 { fail(.frameSizeError, "SETTINGS ACK with a payload") }
            return
        }
        guard header.length % 6 == 0 else { return fail(.frameSizeError, "SETTINGS of \(header.length) bytes") }
        guard countControlFrame() else { return }
        var payload = payload
        var initialWindow: Int?
        let first = !concurrencyAnnounced && !peerSettingsApplied
        peerSettingsApplied = true
        while let id = payload.readInteger(as: UInt16.self), let value = payload.readInteger(as: UInt32.self) {
            switch HTTP2Wire.Setting(rawValue: id) {
            case .headerTableSize?:
                announceTableSize = true
            case .enablePush?:
                // A server may only send 0 (§6.5.2); this side never pushes anyway.
                guard value <= 1, role == .server || value == 0 else { return fail(.protocolError, "ENABLE_PUSH \(value)") }
            case .maxConcurrentStreams?:
                peerMaxConcurrentStreams = Int(value)
                concurrencyAnnounced = true
            case .initialWindowSize?:
                guard value <= HTTP2Wire.maxWindow else { return fail(.flowControlError, "INITIAL_WINDOW_SIZE \(value)") }
                initialWindow = Int(value)
            case .maxFrameSize?:
                guard value >= HTTP2Wire.defaultMaxFrameSize, value <= 16_777_215 else {
                    return fail(.protocolError, "MAX_FRAME_SIZE \(value)")
                }
                peerMaxFrameSize = Int(value)
            default:
                break  // unknown settings are ignored (§6.5.2)
            }
        }
        // A server's first SETTINGS without a stream limit means none (§6.5.2).
        if first && !concurrencyAnnounced { peerMaxConcurrentStreams = Int.max }
        // A new initial window moves every open stream's window by the difference (§6.9.2).
        if let initialWindow, initialWindow != peerInitialWindow {
            let delta = initialWindow - peerInitialWindow
            peerInitialWindow = initialWindow
            for index in streams.indices {
                streams.values[index].sendWindow += delta
                if streams.values[index].sendWindow > HTTP2Wire.maxWindow {
                    return fail(.flowControlError, "stream window overflow")
                }
                // A stream that waited on its own window may move now.
                if streams.values[index].sendWindow > 0, !streams.values[index].queue.isEmpty, !streams.values[index].waiting {
                    markBlocked(streams.keys[index])
                }
            }
        }
        HTTP2Wire.writeFrameHeader(&output, length: 0, type: .settings, flags: HTTP2Wire.Flags.ack, stream: 0)
        openWaiting()
        sendBlocked()
    }

    private mutating func receivePing(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer) {
        guard header.stream == 0 else { return fail(.protocolError, "PING on a stream") }
        guard header.length == 8 else { return fail(.frameSizeError, "PING of \(header.length) bytes") }
        guard header.flags & HTTP2Wire.Flags.ack == 0, countControlFrame() else { return }
        var payload = payload
        HTTP2Wire.writeFrameHeader(&output, length: 8, type: .ping, flags: HTTP2Wire.Flags.ack, stream: 0)
        output.writeBuffer(&payload)
        enforcePingPolicy()
    }

    /// Counts a ping against the server's ``PingPolicy`` (grpc-go's rules).
    private mutating func enforcePingPolicy() {
        guard role == .server, let policy = configuration.pingPolicy else { return }
        defer { lastPingAt = now }
        if sentSincePing {
            sentSincePing = false
            pingStrikes = 0
            return
        }
        let allowed = streams.isEmpty && !policy.permitWithoutStream ? PingPolicy.idleInterval : policy.minimumInterval
        if let last = lastPingAt, now - last < allowed { pingStrikes += 1 }
        if pingStrikes > PingPolicy.maxStrikes { fail(.enhanceYourCalm, "too_many_pings") }
    }

    private mutating func receiveGoAway(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer, into events: inout [Event]) {
        guard header.stream == 0 else { return fail(.protocolError, "GOAWAY on a stream") }
        guard header.length >= 8 else { return fail(.frameSizeError, "GOAWAY of \(header.length) bytes") }
        var payload = payload
        let last = (payload.readInteger(as: UInt32.self) ?? 0) & 0x7FFF_FFFF
        let code = HTTP2Wire.ErrorCode(rawValue: payload.readInteger(as: UInt32.self) ?? 0)
        peerGoingAway = true
        guard role == .client else { return events.append(.goAway(lastStream: last, code)) }
        // Streams above `last` were never processed, and waiting ones never
        // will be (nothing new opens now): they are gone, and the event says
        // so by naming the last stream that may still complete.
        let served = min(last, lastStreamID)
        for id in streams.keys where id > served { remove(id) }
        events.append(.goAway(lastStream: served, code))
    }

    private mutating func receiveWindowUpdate(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer, into events: inout [Event]) {
        guard header.length == 4 else { return fail(.frameSizeError, "WINDOW_UPDATE of \(header.length) bytes") }
        var payload = payload
        let increment = Int((payload.readInteger(as: UInt32.self) ?? 0) & 0x7FFF_FFFF)
        if header.stream == 0 {
            guard increment > 0 else { return fail(.protocolError, "WINDOW_UPDATE of 0") }
            connectionSendWindow += increment
            guard connectionSendWindow <= HTTP2Wire.maxWindow else { return fail(.flowControlError, "connection window overflow") }
            sendBlocked()
        } else if let index = streams.index(forKey: header.stream), !streams.values[index].waiting {
            guard increment > 0 else { return reset(header.stream, .protocolError, into: &events) }
            streams.values[index].sendWindow += increment
            guard streams.values[index].sendWindow <= HTTP2Wire.maxWindow else {
                return reset(header.stream, .flowControlError, into: &events)
            }
            if !streams.values[index].queue.isEmpty, sendQueued(header.stream) { markBlocked(header.stream) }
        } else if isIdle(header.stream) {
            return fail(.protocolError, "WINDOW_UPDATE on idle stream \(header.stream)")
        }
    }
}
