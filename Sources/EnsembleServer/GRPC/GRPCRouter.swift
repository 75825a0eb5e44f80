import Synchronization

/// Handlers by full method path (`/etcdserverpb.KV/Range`).
///
/// - A unary handler gets the request message and returns the response
///   message or a status.
/// - A streaming handler is called on the stream's event loop when a call
///   opens; it gets the ``GRPCServerStream`` to send on and returns the
///   ``GRPCStreamReceiver`` that hears the client's messages. It serves
///   client-, server- and bidirectional-streaming calls alike.
public struct GRPCRouter: Sendable {
    public typealias Unary = @Sendable ([UInt8]) async -> Result<[UInt8], GRPCStatus>
    public typealias Streaming = @Sendable (GRPCServerStream) -> any GRPCStreamReceiver
    public var unary: [String: Unary] = [:]
    public var streaming: [String: Streaming] = [:]
    public init() {}
}

/// Receives one streaming call's inbound side. Called on the stream's event
/// loop, in order: any number of `received`, then at most one
/// `clientFinished`, then exactly one `closed` when the stream is gone
/// (finished by the server, reset by the client, or the connection lost).
public protocol GRPCStreamReceiver: AnyObject {
    func received(_ message: [UInt8])
    /// The client half-closed: it sends no more.
    func clientFinished()
    /// The call is over; release what it holds.
    func closed()
}

/// Routes that can be installed after the server is listening (members must know
/// each other's bound ports before their services exist).
public final class GRPCRouterBox: Sendable {
    private let routes: Mutex<GRPCRouter>

    public init(_ router: GRPCRouter = GRPCRouter()) { routes = Mutex(router) }

    public func install(_ router: GRPCRouter) { routes.withLock { $0 = router } }

    var current: GRPCRouter { routes.withLock { $0 } }
}
