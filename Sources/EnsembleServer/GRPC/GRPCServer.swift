import LeanHTTP2
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import RaftTransport
import Synchronization

/// A gRPC server over HTTP/2 (h2c) on SwiftNIO: each connection gets a
/// ``GRPCServerHandler``, which speaks HTTP/2 through LeanHTTP2's
/// `HTTP2Connection` and serves every stream's unary or streaming
/// call from the router. The same port answers plain HTTP/1.1 for the
/// router's `http` endpoints (`PrefaceSniffer`), in the clear or inside
/// TLS (a listener given a context: `https://` URLs).
///
/// The lean gRPC layer of shared/reference/performance.md: no generic
/// interceptor machinery, protobuf coding in the services, no per-stream
/// child channels, and an HTTP/2 layer that does only what gRPC needs (it
/// replaced NIOHTTP2's connection handler, which cost about half of the
/// leader's CPU per put; BENCHMARKS.md). Writes from many calls share one
/// write and flush.
public final class GRPCServer: Sendable {
    private let group: any EventLoopGroup
    private let router: GRPCRouterBox
    /// Listeners and open connections, for ``shutdown(grace:)``.
    private let channels = Mutex<(listeners: [any Channel], connections: [ObjectIdentifier: any Channel])>(([], [:]))

    /// Sent to every connection on shutdown: HTTP/2 ones say GOAWAY and close
    /// once their calls are done.
    struct GoingAway {}
    /// Request messages larger than this are refused with RESOURCE_EXHAUSTED
    /// and grpc-go's text, as etcd's gRPC server does (etcd: its request
    /// limit plus 512 KiB; the KV service refuses writes over the limit itself).
    public let maxRequestBytes: Int
    public let keepalive: GRPCKeepalive
    /// grpc-go's ConnectionTimeout (120 s): how long a connection may take to
    /// finish its TLS handshake and send its first bytes before it is closed.
    public let connectionTimeout: TimeAmount

    public init(
        group: any EventLoopGroup, router: GRPCRouter, maxRequestBytes: Int = 2 << 20, keepalive: GRPCKeepalive = .etcd,
        connectionTimeout: TimeAmount = .seconds(120)
    ) {
        self.group = group
        self.router = GRPCRouterBox(router)
        self.maxRequestBytes = maxRequestBytes
        self.keepalive = keepalive
        self.connectionTimeout = connectionTimeout
    }

    /// A server whose routes are installed later (the port must be known first).
    public init(group: any EventLoopGroup, router: GRPCRouterBox, maxRequestBytes: Int = 2 << 20, keepalive: GRPCKeepalive = .etcd) {
        self.group = group
        self.router = router
        self.maxRequestBytes = maxRequestBytes
        self.keepalive = keepalive
        self.connectionTimeout = .seconds(120)
    }

    /// Listens on `host:port` (0 picks a free port), inside TLS when `tls`
    /// is given, serving `router` (default: the server's); returns the channel.
    public func listen(
        host: String, port: Int, tls: ReloadingTLSContext? = nil, router: GRPCRouterBox? = nil
    ) async throws -> any Channel {
        let listener: any Channel
        do {
            listener = try await bootstrap(tls: tls, router: router ?? self.router, tcp: true).bind(host: host, port: port).get()
        } catch {
            throw ListenError(network: "tcp", address: ListenError.address(host: host, port: port), error)
        }
        channels.withLock { $0.listeners.append(listener) }
        return listener
    }

    /// Listens on the unix domain socket at `path` (etcd's `unix://` and
    /// `unixs://` client URLs). A path another process serves is refused,
    /// as Go's listener refuses it; a socket file no one serves any more (a
    /// killed member's) is replaced. The file is removed when the listener
    /// closes, if it is still this listener's.
    public func listen(
        unixSocket path: String, tls: ReloadingTLSContext? = nil, router: GRPCRouterBox? = nil
    ) async throws -> any Channel {
        if UnixSocketFile.isServed(path) {
            throw ConfigurationError("listen unix \(path): bind: address already in use")
        }
        var file = UnixSocketFile(path: path)
        let listener: any Channel
        do {
            listener = try await bootstrap(tls: tls, router: router ?? self.router, tcp: false)
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        } catch {
            throw ListenError(network: "unix", address: path, error)
        }
        file.bound()
        listener.closeFuture.whenComplete { [file] _ in file.remove() }
        channels.withLock { $0.listeners.append(listener) }
        return listener
    }

    private func bootstrap(tls: ReloadingTLSContext?, router: GRPCRouterBox, tcp: Bool) -> ServerBootstrap {
        let limit = maxRequestBytes
        let keepalive = self.keepalive
        let connectionTimeout = self.connectionTimeout
        var bootstrap = ServerBootstrap(group: group)
        if tcp {
            bootstrap = bootstrap
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                // Go's listeners (etcd's) probe an idle peer after 15 s: a
                // client whose host vanished before its first call frees its socket.
                .childChannelOption(.socketOption(.so_keepalive), value: 1)
            #if os(Linux)
            for name in [4, 5] {  // TCP_KEEPIDLE, TCP_KEEPINTVL
                bootstrap = bootstrap.childChannelOption(
                    ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: CInt(name))), value: 15)
            }
            #endif
        }
        return bootstrap
            .childChannelInitializer { [self] channel in
                let key = ObjectIdentifier(channel)
                channels.withLock { $0.connections[key] = channel }
                channel.closeFuture.whenComplete { [self] _ in channels.withLock { _ = $0.connections.removeValue(forKey: key) } }
                // A connection that has not finished its TLS handshake and
                // shown its protocol within grpc-go's connection timeout is
                // closed (a socket opened and left silent is not held forever).
                let undecided = channel.eventLoop.scheduleTask(in: connectionTimeout) { channel.close(promise: nil) }
                channel.closeFuture.whenComplete { _ in undecided.cancel() }
                return channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.current())) }
                    // gRPC beside HTTP/1.1, as etcd's cmux: decided on the
                    // preface's first line. Handlers go after the sniffer (it
                    // is last), which then leaves. A connection still undecided
                    // on shutdown has no call to finish: it closes.
                    let sniffer = PrefaceSniffer(
                        length: 16,
                        http2: { pipeline in
                            undecided.cancel()
                            try pipeline.addHandler(GRPCServerHandler(router: router, maxRequestBytes: limit, keepalive: keepalive))
                        },
                        other: { pipeline in
                            undecided.cancel()
                            try pipeline.configureHTTPServerPipeline()
                            try pipeline.addHandler(HTTPEndpointHandler(router: router))
                        },
                        closesOn: { $0 is GoingAway })
                    try channel.pipeline.syncOperations.addHandler(sniffer)
                }
            }
    }

    /// Stops accepting, tells every HTTP/2 connection GOAWAY (calls already
    /// open may finish; clients take new ones elsewhere, as with etcd's
    /// graceful stop), and closes what is still open after `grace`.
    public func shutdown(grace: Duration = .seconds(1)) async {
        let listeners = channels.withLock { $0.listeners }
        for listener in listeners { try? await listener.close() }
        for connection in channels.withLock({ Array($0.connections.values) }) {
            connection.pipeline.fireUserInboundEventTriggered(GoingAway())
        }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, channels.withLock({ !$0.connections.isEmpty }) {
            do { try await Task.sleep(for: .milliseconds(10)) } catch { break }  // cancelled: close now
        }
        // All at once: closing a TLS connection may wait for the peer.
        let open = channels.withLock { Array($0.connections.values) }
        for connection in open { connection.close(promise: nil) }
        for connection in open { try? await connection.closeFuture.get() }
    }
}
