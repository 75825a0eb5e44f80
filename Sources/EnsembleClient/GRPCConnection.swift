import NIOCore
import NIOHPACK
import LeanHTTP2
import NIOPosix
import NIOSSL
import Synchronization

/// One gRPC connection: HTTP/2 over cleartext TCP with prior knowledge (h2c),
/// as etcd serves it without TLS. Any number of calls run on it at once, each
/// on its own HTTP/2 stream, served at the frame level by one
/// ``GRPCClientHandler`` (no per-stream child channels).
///
/// ```swift
/// let connection = try await GRPCConnection.connect(host: "127.0.0.1", port: 2379, group: group)
/// let reply = try await connection.unary("/etcdserverpb.KV/Range", requestBytes, timeout: .seconds(5))
/// await connection.close()
/// ```
///
/// Contract:
/// - A unary call resolves exactly once: with the single response message, or
///   by throwing ``GRPCCallError`` (the server's status, or one of the client's
///   own listed there). A call whose deadline passes or whose task is cancelled
///   is reset on the wire; a write it carried may still have been applied.
/// - No task is created per call: the call's promise is completed on the
///   connection's event loop and resumes the caller directly.
/// - Calls made at about the same time, from any threads, reach the event
///   loop together (``GRPCClientOutbox``): one task and one socket write.
/// - When the connection is lost, every open call fails with 14 UNAVAILABLE;
///   later calls fail the same way at once. There is no reconnection: make a
///   new connection.
/// - More calls than the server's SETTINGS_MAX_CONCURRENT_STREAMS wait, in
///   order, for a free stream (`HTTP2Connection`).
/// - Not yet: compression, reconnection.
public final class GRPCConnection: Sendable {
    /// Settings for a connection.
    public struct Options: Sendable {
        /// Response messages above this fail the call with 8 RESOURCE_EXHAUSTED
        /// (etcd's client allows `math.MaxInt32`).
        public var maxResponseBytes = Int(Int32.max)
        /// How long connecting may take.
        public var connectTimeout: Duration = .seconds(5)
        /// The HTTP/2 receive window of each stream; a larger one lets a big
        /// response arrive without waiting for WINDOW_UPDATE round trips.
        public var streamWindowBytes = 1 << 20
        /// The HTTP/2 receive window of the whole connection, shared by its
        /// streams (grpc-go grows its own up to 16 MiB).
        public var connectionWindowBytes = 16 << 20
        /// TLS (an `https://` endpoint): the context, and the name the
        /// server's certificate must carry (nil: the host connected to).
        public var tls: NIOSSLContext?
        public var serverHostname: String?
        /// Whether ``GRPCConnection/connect(host:port:group:options:)`` waits
        /// for the server's first bytes (its SETTINGS), within
        /// `connectTimeout`: a listener that accepts but does not speak HTTP/2
        /// is then refused before any call could have reached it.
        public var waitForServerPreface = false
        /// Linux TCP_USER_TIMEOUT: the connection is dropped when data it
        /// sent stays unacknowledged this long (a link lost silently in the
        /// network would otherwise look open for ~15 min). nil: the kernel's.
        public var userTimeout: Duration?
        /// Keepalive, as grpc-go clients (etcdctl's `--keepalive-time`,
        /// `--keepalive-timeout`): after `time` with nothing read while calls
        /// are open, a PING; when nothing is read for `timeout` after it, the
        /// connection is closed and its calls fail with 14 UNAVAILABLE — a
        /// watch on a server that vanished (power, a cut link) ends instead
        /// of waiting forever. nil: no pings.
        public var keepalive: (time: Duration, timeout: Duration)?

        public init() {}
    }

    /// What every call on the connection shares.
    final class Shared: Sendable {
        /// `host:port`, for `:authority` and error messages.
        let target: String
        let maxResponseBytes: Int
        /// Why the connection takes no new calls, once it does not.
        private let ending = Mutex<Ending?>(nil)

        enum Ending {
            /// ``GRPCConnection/close()`` was called.
            case closedByClient
            /// The server sent GOAWAY: calls already open may finish.
            case goAway(String)
            /// A connection error: this side or the server sent GOAWAY with an error, or the socket failed.
            case failed(String)
        }

        init(target: String, maxResponseBytes: Int) {
            self.target = target
            self.maxResponseBytes = maxResponseBytes
        }

        var isEnding: Bool { ending.withLock { $0 != nil } }

        /// Records the first reason only.
        func end(_ why: Ending) {
            ending.withLock { if $0 == nil { $0 = why } }
        }

        /// Why a new call is refused.
        var whyRefused: String {
            switch ending.withLock({ $0 }) {
            case .closedByClient?: return "connection to \(target) is closed"
            case let .goAway(why)?: return "connection to \(target) is going away: \(why)"
            case let .failed(why)?: return "connection to \(target) failed: \(why)"
            case nil: return "connection to \(target) is closed"
            }
        }

        /// Why an open call's stream closed without the server's status.
        var whyStreamClosed: String {
            switch ending.withLock({ $0 }) {
            case .closedByClient?: return "connection to \(target) closed by the client before the call completed"
            case let .goAway(why)?: return "connection to \(target) went away before the call completed: \(why)"
            case let .failed(why)?: return "connection to \(target) failed before the call completed: \(why)"
            case nil: return "connection to \(target) lost before the call completed"
            }
        }
    }

    public let host: String
    public let port: Int
    let channel: any Channel
    private let outbox: GRPCClientOutbox
    let shared: Shared
    /// The request headers every call on this connection sends, encoded once.
    private let commonHeaders: ByteBuffer

    private init(host: String, port: Int, channel: any Channel, outbox: GRPCClientOutbox, shared: Shared) {
        self.host = host
        self.port = port
        self.channel = channel
        self.outbox = outbox
        self.shared = shared
        var common = ByteBuffer()
        HPACKLiterals.append(name: ":authority", value: shared.target, to: &common)
        HPACKLiterals.append(name: "content-type", value: "application/grpc", to: &common)
        HPACKLiterals.append(name: "te", value: "trailers", to: &common)
        HPACKLiterals.append(name: "user-agent", value: "ensemble-grpc-client/1", to: &common)
        self.commonHeaders = common
    }

    /// Connects to `host:port`. Throws ``GRPCCallError`` 14 UNAVAILABLE if the
    /// server cannot be reached.
    public static func connect(
        host: String, port: Int, group: any EventLoopGroup, options: Options = Options()
    ) async throws -> GRPCConnection {
        // grpc-go servers (etcd) send a PING with the WINDOW_UPDATE for nearly
        // every request they read (BDP estimation); the control-frame flood
        // limit counts only those with nothing sent in between.
        let configuration = HTTP2Connection.Configuration(
            streamWindow: options.streamWindowBytes, connectionWindow: options.connectionWindowBytes)
        let shared = Shared(target: "\(host):\(port)", maxResponseBytes: options.maxResponseBytes)
        let timeout = TimeAmount.nanoseconds(options.connectTimeout.nanosecondsSaturated)
        let connected: (any Channel, GRPCClientOutbox, EventLoopFuture<Void>)
        do {
            var bootstrap = ClientBootstrap(group: group).channelOption(.socketOption(.tcp_nodelay), value: 1)
            #if os(Linux)
            if let userTimeout = options.userTimeout {
                // TCP_USER_TIMEOUT is 18 on Linux.
                bootstrap = bootstrap.channelOption(
                    ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: 18)),
                    value: SocketOptionValue(clamping: userTimeout.nanosecondsSaturated / 1_000_000))
            }
            #endif
            connected = try await bootstrap
                .connectTimeout(timeout)
                .connect(host: host, port: port) { [shared, options] channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls = options.tls {
                            // SNI and certificate checks take a name, not an IP address.
                            let name = options.serverHostname ?? (host.contains(where: \.isLetter) && !host.contains(":") ? host : nil)
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: name))
                        }
                        let outbox = GRPCClientOutbox(eventLoop: channel.eventLoop)
                        let greeting = channel.eventLoop.makePromise(of: Void.self)
                        let handler = GRPCClientHandler(
                            shared: shared, outbox: outbox, configuration: configuration,
                            greeting: options.waitForServerPreface ? (greeting, timeout) : nil,
                            keepalive: options.keepalive)
                        outbox.attach(handler)
                        do {
                            try channel.pipeline.syncOperations.addHandler(handler)
                        } catch {
                            greeting.fail(error)
                            throw error
                        }
                        if !options.waitForServerPreface { greeting.succeed() }
                        return (channel, outbox, greeting.futureResult)
                    }
                }
            try await connected.2.get()
        } catch {
            throw GRPCCallError.unavailable("cannot connect to \(host):\(port): \(error)")
        }
        return GRPCConnection(host: host, port: port, channel: connected.0, outbox: connected.1, shared: shared)
    }

    /// False once the connection has closed or been lost.
    public var isOpen: Bool { channel.isActive && !shared.isEnding }

    /// Calls a unary method (`/package.Service/Method`) with one request
    /// message and returns the one response message.
    ///
    /// `timeout` is sent as `grpc-timeout` and enforced here too: when it
    /// passes, the call throws 4 DEADLINE_EXCEEDED and the stream is reset.
    public func unary(_ path: String, _ request: [UInt8], timeout: Duration? = nil) async throws -> [UInt8] {
        guard isOpen else { throw GRPCCallError.unavailable(shared.whyRefused) }
        let promise = channel.eventLoop.makePromise(of: [UInt8].self)
        let deadline = timeout.map { NIODeadline.now() + .nanoseconds($0.nanosecondsSaturated) }
        let opened = outbox.open(
            GRPCClientCall.Request(
                head: head(path, timeout), message: ByteBuffer(grpcMessage: request), deadline: deadline,
                sink: .unary(promise)))
        guard let stream = opened else {
            promise.fail(refusal())
            return try await promise.futureResult.get()
        }
        let outbox = self.outbox
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            promise.fail(GRPCCallError.cancelled)
            outbox.push(.cancel(stream))  // resets the stream
        }
    }

    /// ``unary(_:_:timeout:)`` with a callback instead of a task to resume:
    /// `completion` runs once, on the connection's event loop, or at once on
    /// the caller's thread when the call cannot start (a closed connection).
    /// For load generators, whose requesters then cost no task hop per call.
    public func unary(
        _ path: String, _ request: [UInt8], timeout: Duration? = nil,
        completion: @escaping @Sendable (Result<[UInt8], any Error>) -> Void
    ) {
        guard isOpen else { return completion(.failure(GRPCCallError.unavailable(shared.whyRefused))) }
        let promise = channel.eventLoop.makePromise(of: [UInt8].self)
        promise.futureResult.whenComplete(completion)
        let deadline = timeout.map { NIODeadline.now() + .nanoseconds($0.nanosecondsSaturated) }
        let opened = outbox.open(
            GRPCClientCall.Request(
                head: head(path, timeout), message: ByteBuffer(grpcMessage: request), deadline: deadline,
                sink: .unary(promise)))
        if opened == nil { promise.fail(refusal()) }
    }

    /// The event loop this connection's I/O and callbacks run on.
    public var eventLoop: any EventLoop { channel.eventLoop }

    /// Opens a streaming call on `path`. Messages may be sent at once.
    public func stream(_ path: String) -> GRPCClientStream {
        let (messages, continuation) = AsyncThrowingStream<[UInt8], any Error>.makeStream()
        let request = GRPCClientCall.Request(head: head(path, nil), message: nil, deadline: nil, sink: .stream(continuation))
        let opened = isOpen ? outbox.open(request) : nil
        guard let stream = opened else {
            continuation.finish(throwing: refusal())
            return GRPCClientStream(messages: messages, outbox: nil, stream: 0)
        }
        let call = GRPCClientStream(messages: messages, outbox: outbox, stream: stream)
        // Set after opening: until this returns, only the connection can end the stream.
        continuation.onTermination = { termination in
            if case .cancelled = termination { call.cancel() }
        }
        return call
    }

    /// Closes the connection. Calls still open fail with 14 UNAVAILABLE.
    public func close() async {
        shared.end(.closedByClient)
        try? await channel.close()
    }

    /// The request headers of a call, as an HPACK block.
    private func head(_ path: String, _ timeout: Duration?) -> ByteBuffer {
        var head = ByteBuffer()
        head.reserveCapacity(path.utf8.count + commonHeaders.readableBytes + 32)
        head.writeInteger(HPACKLiterals.methodPOST)
        head.writeInteger(HPACKLiterals.schemeHTTP)
        HPACKLiterals.append(name: ":path", value: path, to: &head)
        head.writeImmutableBuffer(commonHeaders)
        if let timeout { HPACKLiterals.append(name: "grpc-timeout", value: grpcTimeoutHeader(timeout), to: &head) }
        return head
    }

    /// Why a call could not be queued: the connection ended, or it has used
    /// every stream ID (then it takes no more calls; make a new connection).
    private func refusal() -> GRPCCallError {
        if outbox.isExhausted { shared.end(.goAway("every HTTP/2 stream ID has been used")) }
        return .unavailable(shared.whyRefused)
    }
}

extension Duration {
    /// Whole nanoseconds, saturating instead of overflowing (the server's
    /// `grpc-timeout: 99999999H` must not trap either).
    package var nanosecondsSaturated: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, sumOverflow) = product.addingReportingOverflow(attoseconds / 1_000_000_000)
        return sumOverflow ? .max : sum
    }
}
