import EnsembleClient
import NIOCore
import NIOPosix

/// The connections of one run, etcd's `--conns`: connection `i` goes to
/// endpoint `i % endpoints.count`, and requester `k` (of `--clients`) uses
/// connection `k % conns`, as etcd's `mustCreateClients` spreads them.
///
/// (etcd 3.4's tool also dials each client to one endpoint,
/// `endpoints[dialTotal % len]`; give at least as many connections as
/// endpoints to load them all.)
public final class BenchConnections: Sendable {
    public let group: MultiThreadedEventLoopGroup
    public let clients: [EtcdClient]

    private init(group: MultiThreadedEventLoopGroup, clients: [EtcdClient]) {
        self.group = group
        self.clients = clients
    }

    /// Opens `count` connections; throws a ``BenchError`` naming the endpoint
    /// that could not be reached. `options.tls` is used for `https://`
    /// endpoints (which need it) and only for them.
    public static func open(
        _ count: Int, to endpoints: [BenchEndpoint], eventLoopThreads: Int, options: GRPCConnection.Options = .init()
    ) async throws -> BenchConnections {
        if let endpoint = endpoints.first(where: \.tls), options.tls == nil {
            throw BenchError("https://\(endpoint): no TLS settings")
        }
        guard !endpoints.isEmpty else { throw BenchError("no endpoints") }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, eventLoopThreads))
        var clients: [EtcdClient] = []
        do {
            for i in 0..<max(1, count) {
                let endpoint = endpoints[i % endpoints.count]
                var settings = options
                if !endpoint.tls { settings.tls = nil }
                let connection = try await GRPCConnection.connect(
                    host: endpoint.host, port: endpoint.port, group: group, options: settings)
                clients.append(EtcdClient(connection))
            }
        } catch {
            for client in clients { await client.connection.close() }
            try? await group.shutdownGracefully()
            throw BenchError("\(error)")
        }
        return BenchConnections(group: group, clients: clients)
    }

    /// The connection requester `k` uses.
    public func client(forRequester k: Int) -> EtcdClient {
        clients[k % clients.count]
    }

    public func close() async {
        for client in clients { await client.connection.close() }
        try? await group.shutdownGracefully()
    }
}
