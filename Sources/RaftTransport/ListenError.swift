import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// A listener that could not be opened, worded as Go's `net.Listen` words it
/// and etcd prints it — `listen tcp 127.0.0.1:2379: bind: address already in
/// use` — so the log names the address and the reason, not NIO's
/// `bind(descriptor:ptr:bytes:)`.
public struct ListenError: Error, CustomStringConvertible {
    public let description: String

    /// `network` is `tcp` or `unix`; `address` is `host:port` or a path.
    public init(network: String, address: String, _ error: any Error) {
        let reason: String
        if let io = error as? IOError {
            // Go's messages are C's, lowercased: "address already in use";
            // the call is NIO's ("bind(descriptor:ptr:bytes:): …" → bind).
            let text = String(cString: strerror(io.errnoCode))
            let call = io.description.prefix { $0 != "(" && $0 != ":" }
            reason = (call.isEmpty ? "bind" : call) + ": " + text.prefix(1).lowercased() + text.dropFirst()
        } else {
            reason = "\(error)"
        }
        description = "listen \(network) \(address): \(reason)"
    }

    /// `host:port`, with an IPv6 host in brackets.
    public static func address(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
