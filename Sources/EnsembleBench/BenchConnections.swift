import EnsembleClient
import NIOCore
import NIOPosix

/// The connections of one run, etcd's `--conns`: connection `i` goes to
/// endpoint `i % endpoints.count`, and requester `k` (of `--clients`) uses
/// connection `k % conns`, as etcd's `mustCreateClients` spreads them.
/// A connection that is lost (a member killed or restarted mid-run) is
/// dialled again (``BenchConnection``), as grpc-go redials etcd's.
///
/// (etcd 3.4's tool also dials each client to one endpoint,
/// `endpoints[dialTotal % len]`; give at least as many connections as
/// endpoints to load them all.)
public final class BenchConnections: Sendable {
    public let group: MultiThreadedEventLoopGroup
    public let slots: [BenchConnection]

    private init(group: MultiThreadedEventLoopGroup, slots: [BenchConnection]) {
        self.group = group
        self.slots = slots
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
        var slots: [BenchConnection] = []
        do {
            for i in 0..<max(1, count) {
                let endpoint = endpoints[i % endpoints.count]
                var settings = options
                if !endpoint.tls { settings.tls = nil }
                let connection = try await GRPCConnection.connect(
                    host: endpoint.host, port: endpoint.port, group: group, options: settings)
                slots.append(BenchConnection(connection, group: group, options: settings))
            }
        } catch {
            for slot in slots { await slot.close() }
            try? await group.shutdownGracefully()
            throw BenchError("\(error)")
        }
        return BenchConnections(group: group, slots: slots)
    }

    /// Each slot's connection now.
    public var clients: [EtcdClient] { slots.map { EtcdClient($0.current) } }

    /// The connection slot requester `k` uses.
    public func slot(forRequester k: Int) -> BenchConnection {
        slots[k % slots.count]
    }

    /// The connection requester `k` uses, as it is now.
    public func client(forRequester k: Int) -> EtcdClient {
        EtcdClient(slot(forRequester: k).current)
    }

    public func close() async {
        for slot in slots { await slot.close() }
        try? await group.shutdownGracefully()
    }
}
