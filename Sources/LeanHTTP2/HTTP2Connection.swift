import NIOCore
import NIOHPACK

/// One HTTP/2 connection (RFC 9113), server or client side, as a state
/// machine: bytes in, events and bytes out, no I/O. The gRPC server's
/// `GRPCServerHandler` and the client's `GRPCClientHandler` are its shells.
///
/// It is what gRPC needs of HTTP/2 and no more, measured to cost a fraction of
/// NIOHTTP2's general connection handler per request (BENCHMARKS.md): streams
/// opened by the client only (push is off), header blocks decoded by NIOHPACK
/// and encoded as literals (``HPACKLiterals``), flow control both ways, PING
/// answers, SETTINGS, RST_STREAM, GOAWAY. Priorities are ignored (§5.3.2).
///
/// Contract:
/// - ``receive(_:into:now:)`` consumes whatever bytes arrive and appends what
///   they mean to `events`, in order. Events are handled after the call
///   returns, so a handler may send on the connection in response.
/// - Every call may leave bytes in ``output``; the shell writes them (one
///   write per batch) with ``takeOutput()``.
/// - Once ``failure`` is set, a GOAWAY is in ``output``, every stream is gone,
///   input is ignored, and the shell closes the connection after writing it.
/// - The peer's windows hold back DATA (and whatever follows it on its
///   stream); a DATA's promise completes when its last byte reaches
///   ``output``, or when its stream goes away.
/// - A stream leaves the table once both sides have ended it, or on a reset
///   (a reset from the peer, or after a stream error, is an event). A server
///   that ends a stream the client is still sending on resets it with
///   NO_ERROR (§8.1), as gRPC servers do.
/// - A client opens at most the server's SETTINGS_MAX_CONCURRENT_STREAMS
///   streams (100 until its SETTINGS come, as NIOHTTP2 assumes); later ones
///   wait, in order, with what is sent on them.
/// - ``close()`` hands back every promise still held when the connection goes.
/// - Floods are connection errors (ENHANCE_YOUR_CALM), with NIOHTTP2's and
///   grpc-go's limits (§10.5): a server allows 1,000 resets in 10 s
///   (``Configuration/maxResets``; the "rapid reset" attack: a reset
///   stream's work has already started); either side
///   allows 10,000 PING or SETTINGS frames within 10 s with no DATA or HEADERS
///   sent in between, 100 empty DATA frames in a row, and a header block in at
///   most 16 frames.
/// - With a ``PingPolicy`` a server refuses clients that ping too often, as
///   grpc-go's server does: GOAWAY ENHANCE_YOUR_CALM "too_many_pings" on the
///   third ping too soon after the one before with nothing sent in between.
package struct HTTP2Connection {
    /// grpc-go's keepalive enforcement (etcd's `--grpc-keepalive-min-time`):
    /// a ping less than `minimumInterval` after the previous one is a strike
    /// — two hours when no stream is open, unless `permitWithoutStream`
    /// (a client with nothing to keep alive has no reason to ping). Sending
    /// DATA or HEADERS clears the strikes: the pings that follow a response
    /// (grpc-go's flow-control estimate) are never counted.
    package struct PingPolicy: Sendable, Equatable {
        package var minimumInterval: TimeAmount
        package var permitWithoutStream: Bool
        package static let maxStrikes = 2
        package static let idleInterval = TimeAmount.hours(2)

        package init(minimumInterval: TimeAmount, permitWithoutStream: Bool = false) {
            self.minimumInterval = minimumInterval
            self.permitWithoutStream = permitWithoutStream
        }
    }

    package enum Role: Sendable { case server, client }

    package struct Configuration: Sendable {
        /// Streams the client may have open at once (the server's setting).
        package var maxConcurrentStreams = 4096
        /// The receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE).
        package var streamWindow = 1 << 20
        /// The connection's receive window, raised from 65,535 at the start
        /// (never lowered: HTTP/2 has no way to).
        package var connectionWindow = 8 << 20
        /// The largest header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE).
        package var maxHeaderListSize = HPACKDecoder.defaultMaxHeaderListSize
        /// Resets a server allows per `resetPeriod` (the client's and its own):
        /// the rapid-reset attack opens and cancels streams by the hundred
        /// thousand a second. The bound is generous (100 a second) because a
        /// proxy or an API server multiplexing many clients on one connection
        /// cancels calls legitimately, and hitting it ends every call on the
        /// connection (NIOHTTP2's 200 per 30 s could cut such a client off).
        package var maxResets = 1_000
        package var resetPeriod = TimeAmount.seconds(10)
        /// A server's limit on how often a client may ping (nil: none).
        package var pingPolicy: PingPolicy?

        package init(
            maxConcurrentStreams: Int = 4096, streamWindow: Int = 1 << 20, connectionWindow: Int = 8 << 20,
            maxHeaderListSize: Int = HPACKDecoder.defaultMaxHeaderListSize
        ) {
            self.maxConcurrentStreams = maxConcurrentStreams
            // Windows are 31-bit (§6.9.1).
            self.streamWindow = min(streamWindow, HTTP2Wire.maxWindow)
            self.connectionWindow = min(max(connectionWindow, HTTP2Wire.defaultWindow), HTTP2Wire.maxWindow)
            self.maxHeaderListSize = maxHeaderListSize
        }
    }

    /// Flood limits besides resets.
    package static let maxControlFrames = 10_000
    package static let maxEmptyDataFrames = 100
    package static let maxHeaderFrames = 16
    /// What a client assumes of the server's stream limit before its SETTINGS.
    static let assumedConcurrentStreams = 100

    package enum Event {
        /// A server's new stream: the request headers; `endStream` if nothing follows.
        case opened(stream: UInt32, HPACKHeaders, endStream: Bool)
        /// Headers on an open stream: a response's headers or trailers, or a
        /// request's trailers.
        case headers(stream: UInt32, HPACKHeaders, endStream: Bool)
        case data(stream: UInt32, ByteBuffer, endStream: Bool)
        /// The stream is gone before this side ended it: the peer reset it
        /// (with `code`), or this connection did after a stream error.
        case reset(stream: UInt32, HTTP2Wire.ErrorCode)
        /// The peer is going away: streams above `lastStream` were not and
        /// will not be processed (they are gone from the table).
        case goAway(lastStream: UInt32, HTTP2Wire.ErrorCode)
    }

    enum Outbound {
        case data(ByteBuffer, endStream: Bool, EventLoopPromise<Void>?)
        /// A header block; with `endStream`, a server's trailers.
        case headers(ByteBuffer, endStream: Bool)
    }

    struct Stream {
        /// How much DATA the peer lets this side send.
        var sendWindow: Int
        /// How much DATA this side has left the peer to send.
        var receiveWindow: Int
        /// The peer has not ended its side.
        var receiving = true
        /// This side's END_STREAM has not gone out yet.
        var sending = true
        /// This side has ended (END_STREAM or trailers handed over, maybe
        /// still queued): nothing more is taken.
        var ended = false
        /// A client's stream whose HEADERS wait for a free stream slot.
        var waiting = false
        /// What flow control or the stream limit holds back, oldest first.
        var queue: CircularBuffer<Outbound> = []
        /// On `blocked`: DATA waits for the connection window (not its own).
        var inBlocked = false
    }

    package let role: Role
    package let configuration: Configuration
    package var output: ByteBuffer
    /// Promises of DATA that reached ``output`` since the last ``takeOutput()``.
    package var written: [EventLoopPromise<Void>] = []
    package private(set) var failure: HTTP2Wire.ErrorCode?
    /// DATA bytes queued on streams, held back by flow control: what a peer
    /// that grants no window makes this side hold (a server bounds it).
    package internal(set) var queuedDataBytes = 0

    var streams: [UInt32: Stream] = [:]
    /// The highest stream opened: by the client (server side), or by this side (client side).
    var lastStreamID: UInt32 = 0
    /// Streams whose queued DATA waits for the connection window, in the
    /// order they blocked. A stream waiting for its own window is not here
    /// (its WINDOW_UPDATE or a new initial window moves it): a connection
    /// WINDOW_UPDATE then costs only the streams it lets send, not every
    /// stream a client keeps at a zero window. Entries of streams since
    /// gone or unblocked are skipped (`Stream.inBlocked` is the truth).
    var blocked: CircularBuffer<UInt32> = []
    /// A client's streams waiting for a slot, in stream order.
    var waitingToOpen: CircularBuffer<UInt32> = []
    /// A client's streams whose HEADERS went out and that are not closed.
    var openedStreams = 0
    var connectionSendWindow = HTTP2Wire.defaultWindow
    var connectionReceiveWindow: Int
    var peerInitialWindow = HTTP2Wire.defaultWindow
    var peerMaxFrameSize = HTTP2Wire.defaultMaxFrameSize
    var peerMaxConcurrentStreams = HTTP2Connection.assumedConcurrentStreams
    /// The next header block starts with a dynamic table size update.
    var announceTableSize = true
    /// The peer sent GOAWAY: a client opens nothing more.
    var peerGoingAway = false
    /// This server sent GOAWAY (``goAway()``): streams opened later are refused.
    package private(set) var goingAway = false
    /// The last stream id a GOAWAY named: a later one may not name more
    /// (§6.8), though streams refused since have higher ids.
    var goAwayLastStreamID = UInt32.max
    /// The server's SETTINGS named a stream limit; any of its SETTINGS came.
    var concurrencyAnnounced = false
    var peerSettingsApplied = false

    var decoder: HPACKDecoder
    var pending = ByteBuffer()
    var prefaceSeen: Bool
    /// The peer's first frame, which must be SETTINGS (§3.4), has come.
    var settingsSeen = false
    /// A header block waiting for its CONTINUATION frames, and how many frames it took.
    var continuing: (stream: UInt32, endStream: Bool, block: ByteBuffer, frames: Int)?
    /// Flood counters (see the type's contract).
    var resetPeriodStart: NIODeadline?
    var resets = 0
    var controlFrames = 0
    /// Control frames are counted per `controlPeriod` (or since this side last
    /// sent DATA or HEADERS): a peer's keepalive pings add up to any number
    /// over months of a quiet connection without being a flood.
    var controlPeriodStart: NIODeadline?
    static let controlPeriod = TimeAmount.seconds(10)
    /// ``PingPolicy`` state: the previous ping, the strikes, and whether
    /// DATA or HEADERS went out since that ping.
    var lastPingAt: NIODeadline?
    var pingStrikes = 0
    var sentSincePing = false
    var emptyDataFrames = 0
    var now = NIODeadline.uptimeNanoseconds(0)

    /// Starts the connection: a client's preface, then this side's SETTINGS
    /// and raised connection window, are the first bytes of ``output``.
    package init(role: Role, configuration: Configuration = Configuration(), allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.role = role
        self.configuration = configuration
        self.output = allocator.buffer(capacity: 256)
        // The decoder's bound is looser than the advertised one: a list over
        // the advertised size is still decoded (the dynamic table stays in
        // step), and refused on its stream alone (§10.5.1).
        self.decoder = HPACKDecoder(allocator: allocator, maxDynamicTableSize: HPACKDecoder.maxDynamicTableSize,
                                    maxHeaderListSize: 4 * configuration.maxHeaderListSize)
        self.connectionReceiveWindow = configuration.connectionWindow
        // Only a server reads a preface (§3.4).
        self.prefaceSeen = role == .client
        var settings: [(HTTP2Wire.Setting, Int)] = [
            (.initialWindowSize, configuration.streamWindow),
            (.maxHeaderListSize, configuration.maxHeaderListSize),
        ]
        switch role {
        case .server: settings.insert((.maxConcurrentStreams, configuration.maxConcurrentStreams), at: 0)
        case .client:
            output.writeBytes(HTTP2Wire.preface)
            settings.insert((.enablePush, 0), at: 0)
        }
        HTTP2Wire.writeFrameHeader(&output, length: 6 * settings.count, type: .settings, stream: 0)
        for (setting, value) in settings {
            output.writeInteger(setting.rawValue)
            output.writeInteger(UInt32(value))
        }
        let raise = configuration.connectionWindow - HTTP2Wire.defaultWindow
        if raise > 0 { writeWindowUpdate(stream: 0, raise) }
    }

    /// Hands the bytes to write (and the promises they complete) to the shell.
    package mutating func takeOutput() -> (ByteBuffer, [EventLoopPromise<Void>])? {
        guard output.readableBytes > 0 || !written.isEmpty else { return nil }
        let taken = (output, written)
        output = ByteBuffer()
        written = []
        return taken
    }

    package func isOpen(_ stream: UInt32) -> Bool { streams[stream] != nil }

    /// Whether any stream is open (or has output waiting).
    package var hasStreams: Bool { !streams.isEmpty }

    /// A server going away (§6.8), as on shutdown: GOAWAY NO_ERROR names the
    /// last stream it will serve. Those finish; streams the client opens
    /// after that are refused with REFUSED_STREAM, which tells the client
    /// they were not processed and may be retried elsewhere.
    package mutating func goAway() {
        guard role == .server, failure == nil, !goingAway else { return }
        goingAway = true
        goAwayLastStreamID = lastStreamID
        HTTP2Wire.writeFrameHeader(&output, length: 8, type: .goAway, stream: 0)
        output.writeInteger(lastStreamID)
        output.writeInteger(HTTP2Wire.ErrorCode.noError.rawValue)
    }

    /// The connection is gone: every promise still held, for the shell to complete.
    package mutating func close() -> [EventLoopPromise<Void>] {
        dropAll()
        defer { written = [] }
        return written
    }

    // MARK: - Errors and frames of its own

    /// A stream error (§5.4.2): RST_STREAM, and the stream is gone.
    mutating func reset(_ id: UInt32, _ code: HTTP2Wire.ErrorCode, into events: inout [Event]) {
        writeReset(id, code)
        if remove(id) != nil { events.append(.reset(stream: id, code)) }
        countReset()
    }

    /// A connection error (§5.4.1): GOAWAY, then nothing more is read or sent.
    package mutating func fail(_ code: HTTP2Wire.ErrorCode, _ reason: String) {
        guard failure == nil else { return }
        failure = code
        dropAll()
        let debug = Array(reason.utf8.prefix(256))
        HTTP2Wire.writeFrameHeader(&output, length: 8 + debug.count, type: .goAway, stream: 0)
        output.writeInteger(role == .server ? min(lastStreamID, goAwayLastStreamID) : 0)
        output.writeInteger(code.rawValue)
        output.writeBytes(debug)
    }

    /// Counts a reset on a server; too many in a period is the rapid-reset attack.
    mutating func countReset() {
        guard role == .server else { return }
        if let start = resetPeriodStart, now - start < configuration.resetPeriod {
            resets += 1
        } else {
            resetPeriodStart = now
            resets = 1
        }
        if resets > configuration.maxResets { fail(.enhanceYourCalm, "too many stream resets") }
    }

    mutating func writeReset(_ id: UInt32, _ code: HTTP2Wire.ErrorCode) {
        HTTP2Wire.writeFrameHeader(&output, length: 4, type: .rstStream, stream: id)
        output.writeInteger(code.rawValue)
    }

    mutating func writeWindowUpdate(stream: UInt32, _ increment: Int) {
        HTTP2Wire.writeFrameHeader(&output, length: 4, type: .windowUpdate, stream: stream)
        output.writeInteger(UInt32(increment))
    }

    /// Takes a stream out of the table; its queued promises complete, and a
    /// client's freed slot goes to the next stream waiting.
    @discardableResult
    mutating func remove(_ id: UInt32) -> Stream? {
        guard let stream = streams.removeValue(forKey: id) else { return nil }
        for case let .data(data, _, promise) in stream.queue {
            queuedDataBytes -= data.readableBytes
            if let promise { written.append(promise) }
        }
        if role == .client {
            if stream.waiting {
                waitingToOpen.removeAll { $0 == id }
            } else {
                openedStreams -= 1
                openWaiting()
            }
        }
        return stream
    }

    private mutating func dropAll() {
        for stream in streams.values {
            for case let .data(_, _, promise?) in stream.queue { written.append(promise) }
        }
        streams.removeAll()
        queuedDataBytes = 0
        blocked.removeAll()
        waitingToOpen.removeAll()
        openedStreams = 0
    }
}
