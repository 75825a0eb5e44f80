import NIOCore
import NIOHPACK

/// The server side of one HTTP/2 connection (RFC 9113), as a state machine:
/// bytes in, events and bytes out, no I/O. ``GRPCServerHandler`` is its shell.
///
/// It is what gRPC needs of HTTP/2 and no more, measured to cost a fraction of
/// NIOHTTP2's general connection handler per request (BENCHMARKS.md): client
/// streams only (no push), header blocks decoded by NIOHPACK and encoded as
/// literals (``HPACKLiterals``), flow control both ways, PING answers,
/// SETTINGS, RST_STREAM, GOAWAY. Priorities are ignored, as §5.3.2 allows.
///
/// Contract:
/// - ``receive(_:into:)`` consumes whatever bytes arrive and appends what they
///   mean to `events`, in order. Events are handled after the call returns, so
///   a handler may send on the connection in response.
/// - Every call may leave bytes in ``output``; the shell writes them (one write
///   per batch) with ``takeOutput()``.
/// - Once ``failure`` is set, a GOAWAY is in ``output``, input is ignored, and
///   the shell closes the connection after writing it.
/// - The peer's flow-control windows hold back DATA (and the trailers behind
///   it); a DATA's promise completes when its last byte reaches ``output``,
///   or when its stream goes away.
/// - A stream leaves the table once both sides have ended it, or on a reset
///   (reported as ``Event/reset(stream:)``).
/// - ``close()`` hands back every promise still held when the connection goes.
/// - Floods are connection errors (ENHANCE_YOUR_CALM), with NIOHTTP2's and
///   grpc-go's limits (RFC 9113 §10.5): more than 200 resets in 30 s (the
///   "rapid reset" attack: each reset stream's work was already started),
///   10,000 PING or SETTINGS frames without a response in between, 100 empty
///   DATA frames in a row, a header block in more than 16 frames.
struct HTTP2ServerConnection {
    struct Configuration {
        /// Calls a client may have open at once; more are refused (REFUSED_STREAM).
        var maxConcurrentStreams = 4096
        /// The receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE).
        var streamWindow = 1 << 20
        /// The connection's receive window, raised from 65,535 at the start
        /// (never lowered: HTTP/2 has no way to).
        var connectionWindow = 8 << 20
        /// The largest header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE).
        var maxHeaderListSize = HPACKDecoder.defaultMaxHeaderListSize
        /// Resets (the client's and this server's) allowed per `resetPeriod`.
        var maxResets = 200
        var resetPeriod = TimeAmount.seconds(30)
    }

    /// Flood limits besides resets.
    static let maxControlFrames = 10_000
    static let maxEmptyDataFrames = 100
    static let maxHeaderFrames = 16

    enum Event {
        /// A new stream: the request headers; `endStream` if nothing follows.
        case opened(stream: UInt32, HPACKHeaders, endStream: Bool)
        /// The request's trailers, which end the client's side.
        case trailers(stream: UInt32)
        case data(stream: UInt32, ByteBuffer, endStream: Bool)
        /// The stream is gone before the server ended it: the peer reset it, or
        /// this connection did after a stream error.
        case reset(stream: UInt32)
    }

    enum Outbound {
        case data(ByteBuffer, EventLoopPromise<Void>?)
        case trailers(ByteBuffer)
    }

    struct Stream {
        /// How much DATA the peer lets this server send.
        var sendWindow: Int
        /// How much DATA this server has left the peer to send.
        var receiveWindow: Int
        /// The client has not ended its side yet.
        var receiving = true
        /// DATA and trailers held back by flow control, oldest first.
        var queue: CircularBuffer<Outbound> = []
    }

    let configuration: Configuration
    var output: ByteBuffer
    /// Promises of DATA that reached ``output`` since the last ``takeOutput()``.
    var written: [EventLoopPromise<Void>] = []
    private(set) var failure: HTTP2Wire.ErrorCode?

    var streams: [UInt32: Stream] = [:]
    /// The highest stream the client opened; lower ones not in `streams` are closed.
    var lastStreamID: UInt32 = 0
    /// Streams with queued output, in the order they blocked.
    var blocked: [UInt32] = []
    var connectionSendWindow = HTTP2Wire.defaultWindow
    var connectionReceiveWindow: Int
    var peerInitialWindow = HTTP2Wire.defaultWindow
    var peerMaxFrameSize = HTTP2Wire.defaultMaxFrameSize
    /// The next header block starts with a dynamic table size update.
    var announceTableSize = true

    private var decoder: HPACKDecoder
    private var pending = ByteBuffer()
    private var prefaceSeen = false
    /// The client's first frame, which must be SETTINGS (§3.4), has come.
    private var settingsSeen = false
    /// A header block waiting for its CONTINUATION frames, and how many frames it took.
    private var continuing: (stream: UInt32, endStream: Bool, block: ByteBuffer, frames: Int)?
    /// Flood counters (see the type's contract).
    private var resetPeriodStart: NIODeadline?
    private var resets = 0
    var controlFrames = 0
    private var emptyDataFrames = 0
    private var now = NIODeadline.uptimeNanoseconds(0)

    /// Starts the connection: the server's SETTINGS, then the connection
    /// window raised, are the first bytes of ``output``.
    init(configuration: Configuration = Configuration(), allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        var configuration = configuration
        configuration.connectionWindow = max(configuration.connectionWindow, HTTP2Wire.defaultWindow)
        self.configuration = configuration
        self.output = allocator.buffer(capacity: 256)
        self.decoder = HPACKDecoder(allocator: allocator, maxDynamicTableSize: HPACKDecoder.maxDynamicTableSize,
                                    maxHeaderListSize: configuration.maxHeaderListSize)
        self.connectionReceiveWindow = configuration.connectionWindow
        let settings: [(HTTP2Wire.Setting, Int)] = [
            (.maxConcurrentStreams, configuration.maxConcurrentStreams),
            (.initialWindowSize, configuration.streamWindow),
            (.maxHeaderListSize, configuration.maxHeaderListSize),
        ]
        HTTP2Wire.writeFrameHeader(&output, length: 6 * settings.count, type: .settings, stream: 0)
        for (setting, value) in settings {
            output.writeInteger(setting.rawValue)
            output.writeInteger(UInt32(value))
        }
        let raise = configuration.connectionWindow - HTTP2Wire.defaultWindow
        if raise > 0 { writeWindowUpdate(stream: 0, raise) }
    }

    /// Hands the bytes to write (and the promises they complete) to the shell.
    mutating func takeOutput() -> (ByteBuffer, [EventLoopPromise<Void>])? {
        guard output.readableBytes > 0 || !written.isEmpty else { return nil }
        let taken = (output, written)
        output = ByteBuffer()
        written = []
        return taken
    }

    func isOpen(_ stream: UInt32) -> Bool { streams[stream] != nil }

    /// The connection is gone: every promise still held, for the shell to complete.
    mutating func close() -> [EventLoopPromise<Void>] {
        for stream in streams.values { dropped(stream) }
        streams.removeAll()
        blocked.removeAll()
        defer { written = [] }
        return written
    }

    // MARK: - Inbound

    /// `now` dates resets for the rapid-reset limit.
    mutating func receive(_ incoming: inout ByteBuffer, into events: inout [Event], now: NIODeadline = .now()) {
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
                fail(.protocolError, "bad connection preface")
                return
            }
            prefaceSeen = true
        }
        while failure == nil, pending.readableBytes >= HTTP2Wire.frameHeaderLength {
            let length = Int(pending.getInteger(at: pending.readerIndex, as: UInt8.self) ?? 0) << 16
                | Int(pending.getInteger(at: pending.readerIndex + 1, as: UInt16.self) ?? 0)
            // This server never raises SETTINGS_MAX_FRAME_SIZE.
            guard length <= HTTP2Wire.defaultMaxFrameSize else {
                fail(.frameSizeError, "frame of \(length) bytes")
                return
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
            fail(.protocolError, "expected CONTINUATION of stream \(continuing.stream)")
            return
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
            if header.length != 5 { fail(.frameSizeError, "PRIORITY of \(header.length) bytes") }
        case .rstStream: receiveReset(header, payload, into: &events)
        case .settings: receiveSettings(header, payload)
        case .pushPromise: fail(.protocolError, "PUSH_PROMISE from a client")
        case .ping: receivePing(header, payload)
        case .goAway:
            if header.stream != 0 { fail(.protocolError, "GOAWAY on a stream") }
            if header.length < 8 { fail(.frameSizeError, "GOAWAY of \(header.length) bytes") }
        case .windowUpdate: receiveWindowUpdate(header, payload, into: &events)
        case .continuation: receiveContinuation(header, payload, into: &events)
        }
    }

    /// Counts a PING or SETTINGS; too many without a response between them is a flood.
    private mutating func countControlFrame() -> Bool {
        controlFrames += 1
        guard controlFrames <= Self.maxControlFrames else {
            fail(.enhanceYourCalm, "too many control frames")
            return false
        }
        return true
    }

    /// Counts a reset; too many in a period is the rapid-reset attack.
    private mutating func countReset() {
        if let start = resetPeriodStart, now - start < configuration.resetPeriod {
            resets += 1
        } else {
            resetPeriodStart = now
            resets = 1
        }
        if resets > configuration.maxResets { fail(.enhanceYourCalm, "too many stream resets") }
    }

    /// Strips padding (§6.1, §6.2); nil when the padding is longer than the frame.
    private mutating func unpadded(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer, skipping extra: Int = 0) -> ByteBuffer? {
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
        guard continuing.block.readableBytes <= 2 * configuration.maxHeaderListSize + HTTP2Wire.defaultMaxFrameSize,
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
        // Every block is decoded, even one for a stream refused, to keep the
        // HPACK dynamic table in step with the peer's.
        var block = block
        let headers: HPACKHeaders
        do {
            headers = try decoder.decodeHeaders(from: &block)
        } catch {
            return fail(.compressionError, "header block: \(error)")
        }
        if streams[id] != nil {
            guard streams[id]?.receiving == true else { return reset(id, .streamClosed, into: &events) }
            // Headers after the first are the request's trailers, which end it.
            guard endStream else { return reset(id, .protocolError, into: &events) }
            streams[id]?.receiving = false
            events.append(.trailers(stream: id))
            return
        }
        guard id & 1 == 1 else { return fail(.protocolError, "client stream \(id) is even") }
        guard id > lastStreamID else { return }  // a stream already closed: ignored
        lastStreamID = id
        guard streams.count < configuration.maxConcurrentStreams else {
            writeReset(id, .refusedStream)
            countReset()
            return
        }
        var stream = Stream(sendWindow: peerInitialWindow, receiveWindow: configuration.streamWindow)
        stream.receiving = !endStream
        streams[id] = stream
        events.append(.opened(stream: id, headers, endStream: endStream))
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
        // Empty DATA that does not end the stream means nothing; many are a flood.
        if data.readableBytes == 0 && !endStream {
            emptyDataFrames += 1
            if emptyDataFrames > Self.maxEmptyDataFrames { fail(.enhanceYourCalm, "too many empty DATA frames") }
            return
        }
        emptyDataFrames = 0
        let id = header.stream
        guard var stream = streams[id] else {
            if id > lastStreamID || id & 1 == 0 { fail(.protocolError, "DATA on idle stream \(id)") }
            return
        }
        guard stream.receiving else { return reset(id, .streamClosed, into: &events) }
        stream.receiveWindow -= header.length
        guard stream.receiveWindow >= 0 else { return reset(id, .flowControlError, into: &events) }
        if endStream {
            stream.receiving = false
        } else if stream.receiveWindow <= configuration.streamWindow / 2 {
            writeWindowUpdate(stream: id, configuration.streamWindow - stream.receiveWindow)
            stream.receiveWindow = configuration.streamWindow
        }
        streams[id] = stream
        events.append(.data(stream: id, data, endStream: endStream))
    }

    private mutating func receiveReset(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer, into events: inout [Event]) {
        guard header.length == 4 else { return fail(.frameSizeError, "RST_STREAM of \(header.length) bytes") }
        guard header.stream != 0, header.stream <= lastStreamID else {
            return fail(.protocolError, "RST_STREAM on idle stream \(header.stream)")
        }
        if let stream = streams.removeValue(forKey: header.stream) {
            dropped(stream)
            events.append(.reset(stream: header.stream))
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
        while let id = payload.readInteger(as: UInt16.self), let value = payload.readInteger(as: UInt32.self) {
            switch HTTP2Wire.Setting(rawValue: id) {
            case .headerTableSize?:
                announceTableSize = true
            case .enablePush?:
                guard value <= 1 else { return fail(.protocolError, "ENABLE_PUSH \(value)") }
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
        // A new initial window moves every open stream's window by the difference (§6.9.2).
        if let initialWindow, initialWindow != peerInitialWindow {
            let delta = initialWindow - peerInitialWindow
            peerInitialWindow = initialWindow
            for index in streams.indices {
                streams.values[index].sendWindow += delta
                if streams.values[index].sendWindow > HTTP2Wire.maxWindow {
                    return fail(.flowControlError, "stream window overflow")
                }
            }
        }
        HTTP2Wire.writeFrameHeader(&output, length: 0, type: .settings, flags: HTTP2Wire.Flags.ack, stream: 0)
        sendBlocked()
    }

    private mutating func receivePing(_ header: HTTP2Wire.FrameHeader, _ payload: ByteBuffer) {
        guard header.stream == 0 else { return fail(.protocolError, "PING on a stream") }
        guard header.length == 8 else { return fail(.frameSizeError, "PING of \(header.length) bytes") }
        guard header.flags & HTTP2Wire.Flags.ack == 0, countControlFrame() else { return }
        var payload = payload
        HTTP2Wire.writeFrameHeader(&output, length: 8, type: .ping, flags: HTTP2Wire.Flags.ack, stream: 0)
        output.writeBuffer(&payload)
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
        } else if let index = streams.index(forKey: header.stream) {
            guard increment > 0 else { return reset(header.stream, .protocolError, into: &events) }
            streams.values[index].sendWindow += increment
            guard streams.values[index].sendWindow <= HTTP2Wire.maxWindow else {
                return reset(header.stream, .flowControlError, into: &events)
            }
            if !streams.values[index].queue.isEmpty, !sendQueued(header.stream) {
                blocked.removeAll { $0 == header.stream }
            }
        } else if header.stream > lastStreamID {
            return fail(.protocolError, "WINDOW_UPDATE on idle stream \(header.stream)")
        }
    }

    // MARK: - Errors

    /// A stream error (§5.4.2): RST_STREAM, and the stream is gone.
    private mutating func reset(_ id: UInt32, _ code: HTTP2Wire.ErrorCode, into events: inout [Event]) {
        writeReset(id, code)
        if let stream = streams.removeValue(forKey: id) {
            dropped(stream)
            events.append(.reset(stream: id))
        }
        countReset()
    }

    /// A connection error (§5.4.1): GOAWAY, then nothing more is read or sent.
    mutating func fail(_ code: HTTP2Wire.ErrorCode, _ reason: String) {
        guard failure == nil else { return }
        failure = code
        for stream in streams.values { dropped(stream) }
        streams.removeAll()
        blocked.removeAll()
        let debug = Array(reason.utf8.prefix(256))
        HTTP2Wire.writeFrameHeader(&output, length: 8 + debug.count, type: .goAway, stream: 0)
        output.writeInteger(lastStreamID)
        output.writeInteger(code.rawValue)
        output.writeBytes(debug)
    }

    mutating func writeReset(_ id: UInt32, _ code: HTTP2Wire.ErrorCode) {
        HTTP2Wire.writeFrameHeader(&output, length: 4, type: .rstStream, stream: id)
        output.writeInteger(code.rawValue)
    }

    mutating func writeWindowUpdate(stream: UInt32, _ increment: Int) {
        HTTP2Wire.writeFrameHeader(&output, length: 4, type: .windowUpdate, stream: stream)
        output.writeInteger(UInt32(increment))
    }

    /// A stream left with output queued: its promises complete (nothing will be sent).
    mutating func dropped(_ stream: Stream) {
        for case let .data(_, promise?) in stream.queue { written.append(promise) }
    }
}
