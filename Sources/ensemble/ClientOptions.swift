import ArgumentParser
import EnsembleBench
import EnsembleClient
import EnsembleServer

/// Options every client command shares, named as etcdctl names them.
struct ClientOptions: ParsableArguments {
    @Option(help: "Comma-separated endpoints (host:port, http://host:port, https://host:port, [v6]:port); the first that answers is used.")
    var endpoints = "127.0.0.1:2379"

    @Option(name: .customLong("command-timeout"), help: "How long a request may take, as etcdctl's: a duration such as 5s or 1m30s.")
    var commandTimeout = "5s"

    @Option(name: .customLong("keepalive-time"), help: "After this long with nothing heard from the server while a call (a watch) is open, ping it; at least 10s, as grpc-go clients.")
    var keepaliveTime = "10s"

    @Option(name: .customLong("keepalive-timeout"), help: "A ping not answered within this long closes the connection: the command fails instead of waiting forever.")
    var keepaliveTimeout = "6s"

    @OptionGroup var tls: TLSOptions

    /// `--command-timeout`: a Go duration (`5s`, `1m30s`) or, as this flag
    /// once was, a bare number of seconds.
    private var commandDuration: Duration? { GoDuration.parse(commandTimeout) ?? Int(commandTimeout).map { .seconds($0) } }

    var timeout: Duration { commandDuration ?? .seconds(5) }

    /// etcdctl's keepalive flags, with grpc-go's 10 s floor on the time (a
    /// server allows a ping every 5 s at most).
    var keepalive: (time: Duration, timeout: Duration) {
        (max(GoDuration.parse(keepaliveTime) ?? .seconds(10), .seconds(10)), GoDuration.parse(keepaliveTimeout) ?? .seconds(6))
    }

    func validate() throws {
        let flags = [
            ("command-timeout", commandTimeout, commandDuration), ("keepalive-time", keepaliveTime, GoDuration.parse(keepaliveTime)),
            ("keepalive-timeout", keepaliveTimeout, GoDuration.parse(keepaliveTimeout)),
        ]
        for (flag, value, parsed) in flags where (parsed ?? .zero) <= .zero {
            throw ValidationError("--\(flag): \"\(value)\" is not a positive duration such as 5s")
        }
    }

    func connect() async throws -> EtcdClient {
        try await Self.connect(endpoints, tls: tls, keepalive: keepalive)
    }

    /// Connects to the first of `list` that answers HTTP/2: a port that
    /// accepts connections but does not speak it (another service, a member
    /// still starting its TLS) is passed over for the next.
    static func connect(
        _ list: String, tls: TLSOptions = TLSOptions(), keepalive: (time: Duration, timeout: Duration)? = nil
    ) async throws -> EtcdClient {
        var failures: [String] = []
        let endpoints = try BenchEndpoint.parseList(list)
        var options = try tls.connectionOptions(for: endpoints)
        options.waitForServerPreface = true
        options.keepalive = keepalive
        for endpoint in endpoints {
            do {
                var settings = options
                if !endpoint.tls { settings.tls = nil }
                return try await EtcdClient.connect(host: endpoint.host, port: endpoint.port, options: settings)
            } catch {
                failures.append("\(endpoint): \(error)")
            }
        }
        throw Unreachable(description: "no endpoint answered: \(failures.joined(separator: "; "))")
    }

    /// Not a usage mistake, so no usage text with it.
    struct Unreachable: Error, CustomStringConvertible {
        var description: String
    }
}

/// etcdctl's TLS flags, for `https://` endpoints.
struct TLSOptions: ParsableArguments {
    @Option(help: "CA bundle (PEM) the server's certificate must chain to (default: the system's roots).")
    var cacert: String?

    @Option(help: "Client certificate (PEM), for servers that require one.")
    var cert: String?

    @Option(help: "Client private key (PEM).")
    var key: String?

    @Flag(name: .customLong("insecure-skip-tls-verify"), help: "Accept any server certificate (testing only).")
    var insecureSkipTLSVerify = false

    /// Connection options with a TLS context when any endpoint is `https://`.
    func connectionOptions(for endpoints: [BenchEndpoint]) throws -> GRPCConnection.Options {
        var options = GRPCConnection.Options()
        if endpoints.contains(where: \.tls) {
            options.tls = try ClientTLSFiles(caCert: cacert, cert: cert, key: key, insecureSkipVerify: insecureSkipTLSVerify).context()
        }
        return options
    }
}
