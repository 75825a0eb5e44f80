/// A gRPC status: the code and message sent in the `grpc-status` and
/// `grpc-message` trailers. etcd clients match errors by message, so services
/// pass etcd's exact text.
public struct GRPCStatus: Error, Sendable, Equatable {
    public var code: Int
    public var message: String
    /// Not sent: for a refusal because another member leads, which one (the
    /// server may forward the request there; ``LeaderForwarder``).
    public var leader: UInt64 = 0

    public init(code: Int, message: String, leader: UInt64 = 0) {
        self.code = code
        self.message = message
        self.leader = leader
    }

    public static let ok = GRPCStatus(code: 0, message: "")
    public static func unimplemented(_ path: String) -> GRPCStatus {
        GRPCStatus(code: 12, message: "unknown method \(path)")
    }
    public static func invalidArgument(_ message: String) -> GRPCStatus { GRPCStatus(code: 3, message: message) }
    public static func notFound(_ message: String) -> GRPCStatus { GRPCStatus(code: 5, message: message) }
    public static func unavailable(_ message: String) -> GRPCStatus { GRPCStatus(code: 14, message: message) }
    public static func `internal`(_ message: String) -> GRPCStatus { GRPCStatus(code: 13, message: message) }
    public static let deadlineExceeded = GRPCStatus(code: 4, message: "context deadline exceeded")
    public static let cancelled = GRPCStatus(code: 1, message: "context canceled")
    /// etcd's ErrGRPCStopped: the member is shutting down.
    public static let serverStopped = GRPCStatus(code: 14, message: "etcdserver: server stopped")

    /// gRPC's grpc-message encoding: percent-encode bytes outside printable ASCII and '%'.
    static func percentEncode(_ message: String) -> String {
        var out = ""
        for byte in message.utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != 0x25 {
                out.append(Character(Unicode.Scalar(byte)))
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count < 2 ? "0" + hex : hex)
            }
        }
        return out
    }
}
