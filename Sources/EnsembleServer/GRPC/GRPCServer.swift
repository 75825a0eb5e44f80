import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix

/// A gRPC server over HTTP/2 (h2c) on SwiftNIO: each connection gets a
/// ``GRPCServerHandler`` after NIOHTTP2's connection handler, which serves
/// every stream's unary or streaming call from the router. The same port answers plain
/// HTTP/1.1 for the router's `http` endpoints (``ProtocolSniffer``).
///
/// The lean gRPC layer of shared/reference/performance.md: no generic
/// interceptor machinery, protobuf coding in the services. HTTP/2 flow control
/// and PING answers are NIOHTTP2's. No per-stream child channels: measured
/// cheaper per call (shared/reference/performance.md), and writes from many
/// calls share one flush.
public final class GRPCServer: Sendable {
    private let group: any EventLoopGroup
    private let router: GRPCRouterBox
    /// Request messages larger than this are refused with etcd's "request is
    /// too large" (etcd: 1.5 MiB plus gRPC overhead).
    public let maxRequestBytes: Int

    public init(group: any EventLoopGroup, router: GRPCRouter, maxRequestBytes: Int = 2 << 20) {
        self.group = group
        self.router = GRPCRouterBox(router)
        self.maxRequestBytes = maxRequestBytes
    }

    /// A server whose routes are installed later (the port must be known first).
    public init(group: any EventLoopGroup, router: GRPCRouterBox, maxRequestBytes: Int = 2 << 20) {
        self.group = group
        self.router = router
        self.maxRequestBytes = maxRequestBytes
    }

    /// Listens on `host:port` (0 picks a free port); returns the channel.
    public func listen(host: String, port: Int) async throws -> any Channel {
        let router = self.router
        let limit = maxRequestBytes
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sniffer = ProtocolSniffer(
                        // Handlers go after the sniffer (it is first), which then leaves.
                        http2: { pipeline in
                            var configuration = NIOHTTP2Handler.ConnectionConfiguration()
                            configuration.initialSettings = GRPCServerHandler.settings
                            try pipeline.addHandler(
                                NIOHTTP2Handler(
                                    mode: .server, frameDelegate: CloseAfterGoAway(channel: channel),
                                    connectionConfiguration: configuration))
                            try pipeline.addHandler(GRPCServerHandler(router: router, maxRequestBytes: limit))
                        },
                        http1: { pipeline in
                            try pipeline.configureHTTPServerPipeline()
                            try pipeline.addHandler(HTTPEndpointHandler(router: router))
                        })
                    try channel.pipeline.syncOperations.addHandler(sniffer)
                }
            }
            .bind(host: host, port: port)
            .get()
    }
}

/// NIOHTTP2 answers a connection error with GOAWAY but leaves the socket
/// open; this closes it once that GOAWAY is out, so calls on it end instead
/// of waiting forever. (A stream error only resets its stream.)
struct CloseAfterGoAway: NIOHTTP2FrameDelegate {
    let channel: any Channel

    func wroteFrame(_ frame: HTTP2Frame) {
        guard case let .goAway(_, errorCode, _) = frame.payload, errorCode != .noError else { return }
        let channel = self.channel
        channel.eventLoop.execute { channel.close(promise: nil) }
    }
}
