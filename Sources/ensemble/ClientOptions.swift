import ArgumentParser
import EnsembleBench
import EnsembleClient

/// Options every client command shares, named as etcdctl names them.
struct ClientOptions: ParsableArguments {
    @Option(help: "Comma-separated endpoints (host:port, http://host:port, [v6]:port); the first that answers is used.")
    var endpoints = "127.0.0.1:2379"

    @Option(name: .customLong("command-timeout"), help: "Seconds a request may take.")
    var commandTimeout = 5

    var timeout: Duration { .seconds(commandTimeout) }

    func connect() async throws -> EtcdClient {
        try await Self.connect(endpoints)
    }

    /// Connects to the first of `list` that answers.
    static func connect(_ list: String) async throws -> EtcdClient {
        var failures: [String] = []
        for endpoint in try BenchEndpoint.parseList(list) {
            do {
                return try await EtcdClient.connect(host: endpoint.host, port: endpoint.port)
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
