import NIOCore
import NIOHTTP2

/// Watches the connection itself (stream 0), after NIOHTTP2's handler:
///
/// - a GOAWAY from the server stops new calls (NIOHTTP2 fails the streams the
///   server will not serve; those it will may finish);
/// - a connection error closes the connection. NIOHTTP2 sends GOAWAY on a
///   protocol violation but leaves the channel open, which would leave open
///   calls waiting forever; closing fails them with 14 UNAVAILABLE.
final class GRPCConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame

    private let shared: GRPCConnection.Shared

    init(_ shared: GRPCConnection.Shared) {
        self.shared = shared
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case let .goAway(lastStreamID, errorCode, _) = unwrapInboundIn(data).payload {
            shared.end(.goAway("GOAWAY \(errorCode), last stream \(lastStreamID)"))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        shared.end(.failed("\(error)"))
        context.close(promise: nil)
    }
}
