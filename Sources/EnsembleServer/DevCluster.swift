import Foundation
import NIOCore
import NIOPosix
import Raft
import RaftTransport

/// A local three-member cluster in one process for development (`ensemble dev`):
/// each member has its own data directory, peer port (Raft over TCP on
/// loopback) and client port (etcd's gRPC API: KV, Watch, Lease, Cluster,
/// Maintenance). A follower hands writes and lease renewals to the leader, so
/// etcdctl works against any endpoint.
public final class DevCluster: @unchecked Sendable {
    public struct Member: Sendable {
        public var id: NodeID
        public var clientPort: Int
        public var peerPort: Int
    }

    public private(set) var members: [Member] = []
    private var nodes: [NodeID: NodeLoop<KVReplica>] = [:]
    private var transports: [NIOPeerTransport] = []
    private var servers: [any Channel] = []
    private let group: MultiThreadedEventLoopGroup
    public let dataDirectory: String
    public static let clusterID: UInt64 = 0xE45E_4B1E

    /// `clientPorts`/`peerPorts`: three each (0 picks free ports, for tests).
    /// `spaceQuota`: bytes each member's store may hold (0: none).
    public init(
        dataDirectory: String, clientPorts: [Int], peerPorts: [Int], tickInterval: Duration = .milliseconds(100),
        spaceQuota: Int = 2 << 30
    ) async throws {
        precondition(clientPorts.count == 3 && peerPorts.count == 3, "a dev cluster has three members")
        self.dataDirectory = dataDirectory
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let ids: [NodeID] = [1, 2, 3]
        var peers: [NodeID: Int] = [:]
        for (i, id) in ids.enumerated() {
            let transport = NIOPeerTransport(group: group)
            peers[id] = try await transport.listen(host: "127.0.0.1", port: peerPorts[i])
            transports.append(transport)
        }
        for (i, id) in ids.enumerated() {
            for peer in ids where peer != id {
                transports[i].setPeer(peer, .init(host: "127.0.0.1", port: peers[peer] ?? 0))
            }
        }
        var options = NodeLoop<KVReplica>.Options()
        options.tickInterval = tickInterval
        var replicas: [NodeID: KVReplica] = [:]
        for (i, id) in ids.enumerated() {
            var config = RaftConfig(id: id)
            config.seed = UInt64.random(in: 1...UInt64.max)
            let replica = KVReplica(space: SpaceQuota(limit: spaceQuota))
            replicas[id] = replica
            let node = try NodeLoop(
                config: config, directory: "\(dataDirectory)/member-\(id)", bootstrap: ids, machine: replica,
                transport: transports[i], options: options)
            nodes[id] = node
        }
        // Bind every client port first, so the member list can name them all.
        var bound: [NodeID: any Channel] = [:]
        var routers: [NodeID: GRPCRouterBox] = [:]
        for (i, id) in ids.enumerated() {
            let box = GRPCRouterBox()
            routers[id] = box
            bound[id] = try await GRPCServer(group: group, router: box).listen(host: "127.0.0.1", port: clientPorts[i])
            members.append(Member(id: id, clientPort: bound[id]?.localAddress?.port ?? clientPorts[i], peerPort: peers[id] ?? 0))
        }
        let directory = members.map {
            MemberInfo(id: $0.id, name: "member-\($0.id)", peerURLs: ["http://127.0.0.1:\($0.peerPort)"],
                       clientURLs: ["http://127.0.0.1:\($0.clientPort)"])
        }
        let all = nodes
        for id in ids {
            guard let node = nodes[id], let box = routers[id] else { continue }
            node.start()
            var router = GRPCRouter()
            let space = replicas[id]?.space ?? SpaceQuota()
            KVService(node: node, clusterID: Self.clusterID, space: space, leaderInProcess: { all[$0] }).register(on: &router)
            LeaseService(node: node, clusterID: Self.clusterID, space: space, leaderInProcess: { all[$0] }).register(on: &router)
            WatchService(node: node, clusterID: Self.clusterID, on: group.next()).register(on: &router)
            ClusterService(node: node, clusterID: Self.clusterID, members: directory).register(on: &router)
            MaintenanceService(node: node, clusterID: Self.clusterID, leaderInProcess: { all[$0] }).register(on: &router)
            HealthService(node: node).register(on: &router)
            box.install(router)
            if let server = bound[id] { servers.append(server) }
        }
        nodes[1]?.campaign()
    }

    /// The comma-separated client endpoints, for `etcdctl --endpoints=`.
    public var endpoints: String { members.map { "127.0.0.1:\($0.clientPort)" }.joined(separator: ",") }

    public func status(of id: NodeID) -> NodeStatus? { nodes[id]?.status }

    /// Waits until a member leads.
    public func waitForLeader(timeout: Duration = .seconds(10)) async throws -> NodeID {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let leader = nodes.values.first(where: { $0.status.role == .leader }) { return leader.id }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw NodeError.noLeader
    }

    /// Stops every member cleanly: servers, node loops (which sync and close
    /// their logs), transports, threads.
    public func shutdown() async {
        for server in servers { try? await server.close() }
        for node in nodes.values { node.stop() }
        for transport in transports { await transport.shutdown() }
        try? await group.shutdownGracefully()
    }
}
