import ArgumentParser
import EnsembleClient

/// Options every client command shares, named as etcdctl names them.
struct ClientOptions: ParsableArguments {
    @Option(help: "Comma-separated endpoints (host:port); the first that answers is used.")
    var endpoints = "127.0.0.1:2379"

    @Option(name: .customLong("command-timeout"), help: "Seconds a request may take.")
    var commandTimeout = 5

    var timeout: Duration { .seconds(commandTimeout) }

    func connect() async throws -> EtcdClient {
        try await EtcdClient.connect(endpoints: endpoints)
    }
}
