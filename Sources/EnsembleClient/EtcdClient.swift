import EnsembleAPI
import NIOCore
import NIOPosix
import SwiftProtobuf

/// etcd's v3 API over one ``GRPCConnection``: typed calls that take and return
/// the generated messages. Works against etcd and Ensemble alike.
///
/// Errors are ``GRPCCallError`` with etcd's code and text, so a caller can
/// match etcd's `rpctypes` messages ("etcdserver: requested lease not
/// found"). A response the client cannot decode is 13 INTERNAL.
///
/// ```swift
/// let etcd = EtcdClient(connection)
/// var put = Etcdserverpb_PutRequest()
/// put.key = Data("greeting".utf8)
/// put.value = Data("hello".utf8)
/// let revision = try await etcd.put(put).header.revision
/// ```
public struct EtcdClient: Sendable {
    public let connection: GRPCConnection

    public init(_ connection: GRPCConnection) {
        self.connection = connection
    }

    /// Connects to an etcd v3 endpoint.
    public static func connect(
        host: String, port: Int, group: any EventLoopGroup, options: GRPCConnection.Options = .init()
    ) async throws -> EtcdClient {
        EtcdClient(try await GRPCConnection.connect(host: host, port: port, group: group, options: options))
    }

    public func range(_ request: Etcdserverpb_RangeRequest, timeout: Duration? = nil) async throws -> Etcdserverpb_RangeResponse {
        try await call(EtcdMethod.range, request, timeout: timeout)
    }

    public func put(_ request: Etcdserverpb_PutRequest, timeout: Duration? = nil) async throws -> Etcdserverpb_PutResponse {
        try await call(EtcdMethod.put, request, timeout: timeout)
    }

    public func deleteRange(
        _ request: Etcdserverpb_DeleteRangeRequest, timeout: Duration? = nil
    ) async throws -> Etcdserverpb_DeleteRangeResponse {
        try await call(EtcdMethod.deleteRange, request, timeout: timeout)
    }

    public func txn(_ request: Etcdserverpb_TxnRequest, timeout: Duration? = nil) async throws -> Etcdserverpb_TxnResponse {
        try await call(EtcdMethod.txn, request, timeout: timeout)
    }

    public func compact(
        _ request: Etcdserverpb_CompactionRequest, timeout: Duration? = nil
    ) async throws -> Etcdserverpb_CompactionResponse {
        try await call(EtcdMethod.compact, request, timeout: timeout)
    }

    public func leaseGrant(
        _ request: Etcdserverpb_LeaseGrantRequest, timeout: Duration? = nil
    ) async throws -> Etcdserverpb_LeaseGrantResponse {
        try await call(EtcdMethod.leaseGrant, request, timeout: timeout)
    }

    public func leaseRevoke(
        _ request: Etcdserverpb_LeaseRevokeRequest, timeout: Duration? = nil
    ) async throws -> Etcdserverpb_LeaseRevokeResponse {
        try await call(EtcdMethod.leaseRevoke, request, timeout: timeout)
    }

    /// Opens a `Watch` stream, which carries any number of watchers.
    public func watch() -> EtcdWatchStream {
        EtcdWatchStream(connection.stream(EtcdMethod.watch))
    }

    /// Any unary method, for calls this type does not name (a follower
    /// forwarding a request it received as bytes uses
    /// ``GRPCConnection/unary(_:_:timeout:)`` directly).
    public func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ path: String, _ request: Request, as: Response.Type = Response.self, timeout: Duration? = nil
    ) async throws -> Response {
        let bytes: [UInt8]
        do {
            bytes = try request.serializedBytes()
        } catch {
            throw GRPCCallError(code: GRPCCallError.internalCode, message: "cannot encode \(Request.protoMessageName): \(error)")
        }
        let reply = try await connection.unary(path, bytes, timeout: timeout)
        do {
            return try Response(serializedBytes: reply)
        } catch {
            throw GRPCCallError(code: GRPCCallError.internalCode, message: "cannot decode \(Response.protoMessageName): \(error)")
        }
    }
}

/// The method paths of etcd's v3 API that ``EtcdClient`` calls.
public enum EtcdMethod {
    public static let range = "/etcdserverpb.KV/Range"
    public static let put = "/etcdserverpb.KV/Put"
    public static let deleteRange = "/etcdserverpb.KV/DeleteRange"
    public static let txn = "/etcdserverpb.KV/Txn"
    public static let compact = "/etcdserverpb.KV/Compact"
    public static let leaseGrant = "/etcdserverpb.Lease/LeaseGrant"
    public static let leaseRevoke = "/etcdserverpb.Lease/LeaseRevoke"
    public static let watch = "/etcdserverpb.Watch/Watch"
}

extension EtcdClient {
    /// Connects on NIO's shared event loop threads (for command-line tools).
    public static func connect(host: String, port: Int, options: GRPCConnection.Options = .init()) async throws -> EtcdClient {
        try await connect(host: host, port: port, group: MultiThreadedEventLoopGroup.singleton, options: options)
    }
}
