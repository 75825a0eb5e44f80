import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix

/// A gRPC server over HTTP/2 (h2c) on SwiftNIO: every request stream gets a
/// ``GRPCCallHandler`` on NIOHTTP2's per-stream child channel, which serves
/// unary and streaming calls from the router. The same port answers plain
/// HTTP/1.1 for the router's `http` endpoints (``ProtocolSniffer``).
///
/// The lean gRPC layer of shared/reference/performance.md: no generic
/// interceptor machinery, protobuf coding in the services. HTTP/2 flow control
/// and PING answers are NIOHTTP2's. A frame-level handler without child
/// channels is the measured next step.
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
                            _ = try pipeline.configureHTTP2Pipeline(
                                mode: .server, connectionConfiguration: .init(), streamConfiguration: .init()
                            ) { stream in
                                stream.eventLoop.makeCompletedFuture {
                                    try stream.pipeline.syncOperations.addHandler(GRPCCallHandler(router: router, maxRequestBytes: limit))
                                }
                            }
                            try pipeline.addHandler(CloseOnConnectionError())
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
/// open; this closes it, so calls on it end instead of waiting forever.
final class CloseOnConnectionError: ChannelInboundHandler {
    typealias InboundIn = Any

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
