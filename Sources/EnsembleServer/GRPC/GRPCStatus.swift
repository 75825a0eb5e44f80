import Synchronization

/// A gRPC status: the code and message sent in the `grpc-status` and
/// `grpc-message` trailers. etcd clients match errors by message, so services
/// pass etcd's exact text.
public struct GRPCStatus: Error, Sendable, Equatable {
    public var code: Int
    public var message: String

    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }

    public static let ok = GRPCStatus(code: 0, message: "")
    public static func unimplemented(_ path: String) -> GRPCStatus {
        GRPCStatus(code: 12, message: "unknown method \(path)")
    }
    public static func invalidArgument(_ message: String) -> GRPCStatus { GRPCStatus(code: 3, message: message) }
    public static func unavailable(_ message: String) -> GRPCStatus { GRPCStatus(code: 14, message: message) }
    public static func `internal`(_ message: String) -> GRPCStatus { GRPCStatus(code: 13, message: message) }
}

/// Routes that can be installed after the server is listening (members must know
/// each other's bound ports before their services exist).
public final class GRPCRouterBox: Sendable {
    private let routes: Mutex<GRPCRouter>

    public init(_ router: GRPCRouter = GRPCRouter()) { routes = Mutex(router) }

    public func install(_ router: GRPCRouter) { routes.withLock { $0 = router } }

    var current: GRPCRouter { routes.withLock { $0 } }
}

/// Unary handlers by full method path (`/etcdserverpb.KV/Range`).
public struct GRPCRouter: Sendable {
    public typealias Unary = @Sendable ([UInt8]) async -> Result<[UInt8], GRPCStatus>
    public var unary: [String: Unary] = [:]
    public init() {}
}
