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
    public var http: [String: @Sendable (HTTPRequest) async -> HTTPResponse] = [:]
    /// Asked before serving a unary etcd call (`path`, request message) sent
    /// with `hasleader: true` (clientv3's WithRequireLeader): the refusal, if
    /// any — "etcdserver: no leader" while the member knows none, as etcd's
    /// unary interceptor answers. Streams check it themselves
    /// (``GRPCServerStream/requiresLeader``).
    public var leaderRequired: LeaderCheck?
    /// What a route makes of the leader's answer to a call this member
    /// forwarded (``LeaderForwarder``), by path: membership changes are
    /// answered once applied here too.
    public var afterForward: [String: @Sendable ([UInt8]) async -> [UInt8]] = [:]
    public typealias LeaderCheck = @Sendable (_ path: String, _ request: [UInt8]) -> GRPCStatus?
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
    /// About how many bytes of keys and values the message holds, when it
    /// may be large: from ``GRPCServerHandler/offLoopBytes`` on, it is
    /// encoded off the connection's event loop.
    var weight = 0

    public init(bytes: [UInt8]) { encode = { .success(bytes) } }

    /// The bytes — or the status the call ends with — that `make` gives, when written.
    init(result make: @escaping @Sendable () -> Result<[UInt8], GRPCStatus>) { encode = make }

    /// Bytes `encode` writes by hand, when written.
    init(encoded: @escaping @Sendable () -> [UInt8]) { encode = { .success(encoded()) } }

    /// The message `make` builds, serialized when written.
    public init<M: SwiftProtobuf.Message>(_ make: @escaping @Sendable () -> M) {
        encode = { KVService.serialize(make()) }
    }

    /// The message `make` builds, holding about `weight` bytes of data.
    init<M: SwiftProtobuf.Message>(weight: Int, _ make: @escaping @Sendable () -> M) {
        self.init(make)
        self.weight = weight
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

/// The receiver of a call the server ended as it opened (it ignores the rest).
public final class RefusedCall: GRPCStreamReceiver {
    /// Ends `stream` with `status` at once.
    public init(_ stream: GRPCServerStream, _ status: GRPCStatus) {
        stream.finish(status)
    }

    public func received(_ message: [UInt8]) {}
    public func clientFinished() {}
    public func closed() {}
}

/// Hears finished calls, for metrics. ``method(path:streaming:)`` is asked
/// once per method when routes are installed, under the router's lock (it
/// must not call back into the router); the recorder it returns hears each
/// of that method's calls.
public protocol GRPCCallObserver: Sendable {
    func method(path: String, streaming: Bool) -> any GRPCMethodObserver
}

/// One method's recorder: a finished call's status code and how long it took
/// from request headers to trailers. Called on the connection's event loop;
/// must be cheap.
public protocol GRPCMethodObserver: Sendable {
    /// A call to the method arrived (its request headers), from a client
    /// that sent this `client-api-version` header (clientv3 does), if any.
    func started(clientAPIVersion: String?)
    func handled(code: Int, duration: Duration)
    /// A request message of `bytes` arrived (after its 5-byte gRPC prefix).
    func received(bytes: Int)
    /// A response message of `bytes` was queued to the client.
    func sent(bytes: Int)
}

extension GRPCMethodObserver {
    public func started(clientAPIVersion: String?) {}
    public func received(bytes: Int) {}
    public func sent(bytes: Int) {}
}

/// Routes that can be installed after the server is listening (members must know
/// each other's bound ports before their services exist), each with its
/// method's recorder resolved once, not looked up by name on every call.
public final class GRPCRouterBox: Sendable {
    /// A gRPC method's handler and recorder.
    struct Route {
        enum Handler {
            case unary(GRPCUnary)
            case streaming(GRPCRouter.Streaming)
        }
        let handler: Handler
        let metrics: (any GRPCMethodObserver)?
        /// For etcd's unary calls: ``GRPCRouter/leaderRequired``.
        var leaderRequired: GRPCRouter.LeaderCheck? = nil
    }

    private struct State {
        var router: GRPCRouter
        var observer: (any GRPCCallObserver)?
        var routes: [String: Route] = [:]

        mutating func resolve() {
            routes = [:]
            for (path, unary) in router.unary {
                routes[path] = Route(
                    handler: .unary(unary), metrics: observer?.method(path: path, streaming: false),
                    leaderRequired: path.hasPrefix("/ensemble.") ? nil : router.leaderRequired)
            }
            for (path, streaming) in router.streaming where routes[path] == nil {
                routes[path] = Route(handler: .streaming(streaming), metrics: observer?.method(path: path, streaming: true))
            }
        }
    }

    private let state: Mutex<State>

    public init(_ router: GRPCRouter = GRPCRouter()) {
        var state = State(router: router)
        state.resolve()
        self.state = Mutex(state)
    }

    /// Sets who hears finished calls.
    public func observe(with observer: any GRPCCallObserver) {
        state.withLock {
            $0.observer = observer
            $0.resolve()
        }
    }

    public func install(_ router: GRPCRouter) {
        state.withLock {
            $0.router = router
            $0.resolve()
        }
    }

    var current: GRPCRouter { state.withLock { $0.router } }

    /// The route for a gRPC method path; nil for none. Calls to no route
    /// are not recorded: as in grpc-go (etcd), an unknown method is refused
    /// before any interceptor sees it, and a client could otherwise make a
    /// series per path it invents.
    func route(_ path: String) -> Route? {
        state.withLock { $0.routes[path] }
    }
}
