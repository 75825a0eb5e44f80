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

    @OptionGroup var tls: TLSOptions

    var timeout: Duration { GoDuration.parse(commandTimeout) ?? Int(commandTimeout).map { .seconds($0) } ?? .seconds(5) }

    func validate() throws {
        // (A bare number is taken as seconds, as this flag once was.)
        guard let parsed = GoDuration.parse(commandTimeout) ?? Int(commandTimeout).map({ Duration.seconds($0) }), parsed > .zero else {
            throw ValidationError("--command-timeout: \"\(commandTimeout)\" is not a positive duration such as 5s")
        }
    }

    func connect() async throws -> EtcdClient {
        try await Self.connect(endpoints, tls: tls)
    }

    /// Connects to the first of `list` that answers.
    static func connect(_ list: String, tls: TLSOptions = TLSOptions()) async throws -> EtcdClient {
        var failures: [String] = []
        let endpoints = try BenchEndpoint.parseList(list)
        let options = try tls.connectionOptions(for: endpoints)
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
