import LeanHTTP2

/// A call that did not end with `grpc-status: 0`: the status the server sent,
/// or the one the client gives the call when it cannot finish it.
///
/// `code` is gRPC's status code (doc/statuscodes.md); `message` is the
/// server's `grpc-message`, already percent-decoded. etcd's errors keep their
/// exact text here ("etcdserver: requested lease not found"), which is what
/// etcd's clients match on.
///
/// Failures the client itself reports:
/// - connection refused, lost or closed: 14 UNAVAILABLE;
/// - the call's timeout passed: 4 DEADLINE_EXCEEDED ("context deadline exceeded");
/// - the calling task was cancelled: 1 CANCELLED ("context canceled");
/// - a response that breaks the gRPC protocol: 13 INTERNAL;
/// - a response message above the connection's limit: 8 RESOURCE_EXHAUSTED.
public struct GRPCCallError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: Int
    public var message: String

    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }

    /// grpc-go's form, so logs read the same for every client.
    public var description: String { "rpc error: code = \(Self.name(of: code)) desc = \(message)" }

    /// The name of a status code (`Unavailable`), or `Code(n)` for an unknown one.
    public static func name(of code: Int) -> String {
        let names = [
            "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
            "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
            "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
        ]
        return names.indices.contains(code) ? names[code] : "Code(\(code))"
    }

    public static let cancelledCode = 1
    public static let deadlineExceededCode = 4
    public static let resourceExhaustedCode = 8
    public static let internalCode = 13
    public static let unavailableCode = 14

    /// The texts Go's context errors have; etcd's clients print these.
    public static let deadlineExceeded = GRPCCallError(code: deadlineExceededCode, message: "context deadline exceeded")
    public static let cancelled = GRPCCallError(code: cancelledCode, message: "context canceled")

    static func unavailable(_ message: String) -> GRPCCallError { GRPCCallError(code: unavailableCode, message: message) }
    static func `internal`(_ message: String) -> GRPCCallError { GRPCCallError(code: internalCode, message: message) }
}

extension GRPCCallError {
    /// The status for a response whose HTTP status is not 200 (gRPC's
    /// doc/http-grpc-status-mapping.md).
    static func httpStatus(_ status: Int) -> GRPCCallError {
        let code: Int
        switch status {
        case 400: code = 13
        case 401: code = 16
        case 403: code = 7
        case 404: code = 12
        case 429, 502, 503, 504: code = 14
        default: code = 2
        }
        return GRPCCallError(code: code, message: "unexpected HTTP status code received from server: \(status)")
    }

    /// The status for a stream the server reset (grpc-go's mapping of HTTP/2
    /// error codes).
    static func reset(_ error: HTTP2Wire.ErrorCode) -> GRPCCallError {
        let code: Int
        switch error {
        case .refusedStream: code = 14
        case .cancel: code = 1
        case .enhanceYourCalm: code = 8
        case .inadequateSecurity: code = 7
        default: code = 13
        }
        return GRPCCallError(code: code, message: "stream terminated by RST_STREAM with error code: \(error)")
    }

    /// Decodes a `grpc-message` value: `%XX` is a byte of UTF-8; a `%` not
    /// followed by two hex digits is kept as it is (the gRPC spec asks clients
    /// to accept such values).
    static func percentDecode(_ value: String) -> String {
        guard value.utf8.contains(UInt8(ascii: "%")) else { return value }
        let bytes = Array(value.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count,
                let high = hexValue(bytes[i + 1]), let low = hexValue(bytes[i + 2])
            {
                out.append(high << 4 | low)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
