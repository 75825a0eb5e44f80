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
    /// Plain HTTP/1.1 GET endpoints on the same port, by path (`/metrics`).
    public var http: [String: @Sendable () async -> HTTPResponse] = [:]
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

/// Hears every finished call, for metrics: its method path, status code and
/// how long it took from request headers to trailers. Called on the stream's
/// event loop; must be cheap.
public protocol GRPCCallObserver: Sendable {
    func handled(path: String, streaming: Bool, code: Int, duration: Duration)
}

/// Routes that can be installed after the server is listening (members must know
/// each other's bound ports before their services exist).
public final class GRPCRouterBox: Sendable {
    private let routes: Mutex<GRPCRouter>
    private let observers = Mutex<(any GRPCCallObserver)?>(nil)

    public init(_ router: GRPCRouter = GRPCRouter()) { routes = Mutex(router) }

    /// Sets who hears finished calls.
    public func observe(with observer: any GRPCCallObserver) { observers.withLock { $0 = observer } }

    var observer: (any GRPCCallObserver)? { observers.withLock { $0 } }

    public func install(_ router: GRPCRouter) { routes.withLock { $0 = router } }

    var current: GRPCRouter { routes.withLock { $0 } }
}
