/// One `--endpoints` entry: `host:port`, optionally written as
/// `http://host:port` as etcdctl accepts it, or `https://host:port` for TLS.
public struct BenchEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// Written `https://`: the connection runs inside TLS.
    public var tls: Bool

    public init(host: String, port: Int, tls: Bool = false) {
        self.host = host
        self.port = port
        self.tls = tls
    }

    public var description: String { "\(host):\(port)" }

    /// Parses a comma-separated list; throws a message a user can act on.
    public static func parseList(_ list: String) throws(BenchError) -> [BenchEndpoint] {
        let entries = list.split(separator: ",").map { $0.trimmingSpaces }.filter { !$0.isEmpty }
        guard !entries.isEmpty else { throw BenchError("--endpoints is empty") }
        var endpoints: [BenchEndpoint] = []
        for entry in entries { endpoints.append(try parse(entry)) }
        return endpoints
    }

    public static func parse(_ entry: String) throws(BenchError) -> BenchEndpoint {
        var rest = Substring(entry)
        let tls = rest.hasPrefix("https://")
        if tls { rest = rest.dropFirst("https://".count) }
        if rest.hasPrefix("http://") { rest = rest.dropFirst("http://".count) }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        // [v6]:port or host:port
        let host: Substring
        let portText: Substring
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            host = rest[rest.index(after: rest.startIndex)..<close]
            let afterBracket = rest[rest.index(after: close)...]
            guard afterBracket.hasPrefix(":") else { throw BenchError("\(entry): expected [host]:port") }
            portText = afterBracket.dropFirst()
        } else {
            guard let colon = rest.lastIndex(of: ":") else { throw BenchError("\(entry): expected host:port") }
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (1...65535).contains(port) else {
            throw BenchError("\(entry): expected host:port with a port from 1 to 65535")
        }
        return BenchEndpoint(host: String(host), port: port, tls: tls)
    }
}

/// A benchmark that cannot run as asked; the text says why.
public struct BenchError: Error, Sendable, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension Substring {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
