import SwiftProtobuf
import Synchronization

/// Handlers by full method path (`/etcdserverpb.KV/Range`).
///
/// - A unary handler gets the request message and answers once through its
///   reply callback, from any thread (``GRPCUnary``).
/// - A streaming handler is called on the connection's event loop when a call
///   opens; it gets the ``GRPCServerStream`` to send on and returns the
///   ``GRPCStreamReceiver`` that hears the client's messages. It serves
///   client-, server- and bidirectional-streaming calls alike.
public struct GRPCRouter: Sendable {
    public typealias Streaming = @Sendable (GRPCServerStream) -> any GRPCStreamReceiver
    public var unary: [String: GRPCUnary] = [:]
    public var streaming: [String: Streaming] = [:]
    /// Plain HTTP/1.1 GET endpoints on the same port, by path (`/metrics`).
    public var http: [String: @Sendable () async -> HTTPResponse] = [:]
    public init() {}
}

/// A unary method. The hot ones (KV) are ``direct``: they hand the request to
/// the node with a callback and answer from the thread that applies it, with
/// no Swift task per call. The rest run as a task (``task(_:)``).
public struct GRPCUnary: Sendable {
    /// Answers a call, exactly once, from any thread.
    public typealias Reply = @Sendable (Result<GRPCResponse, GRPCStatus>) -> Void
    let serve: @Sendable (_ request: [UInt8], _ reply: @escaping Reply) -> Void

    /// A handler that answers through `reply` whenever its work is done.
    public static func direct(_ serve: @escaping @Sendable (_ request: [UInt8], _ reply: @escaping Reply) -> Void) -> GRPCUnary {
        GRPCUnary(serve: serve)
    }

    /// A handler written as an async function, run as a task per call.
    public static func task(_ body: @escaping @Sendable ([UInt8]) async -> Result<[UInt8], GRPCStatus>) -> GRPCUnary {
        GRPCUnary { request, reply in
            Task { reply(await body(request).map(GRPCResponse.init(bytes:))) }
        }
    }
}

/// A response message that is encoded where it is written — on the
/// connection's event loop — rather than on the thread that produced it (the
/// node loop, which every request shares).
public struct GRPCResponse: Sendable {
    let encode: @Sendable () -> Result<[UInt8], GRPCStatus>

    public init(bytes: [UInt8]) { encode = { .success(bytes) } }

    /// Bytes `encode` writes by hand, when written.
    init(encoded: @escaping @Sendable () -> [UInt8]) { encode = { .success(encoded()) } }

    /// The message `make` builds, serialized when written.
    public init<M: SwiftProtobuf.Message>(_ make: @escaping @Sendable () -> M) {
        encode = { KVService.serialize(make()) }
    }
}

/// Receives one streaming call's inbound side. Called on the connection's
/// event loop, in order: any number of `received`, then at most one
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
/// how long it took from request headers to trailers. Called on the
/// connection's event loop; must be cheap.
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
