import Foundation
import KV
import NIOCore
import NIOPosix
import Raft
import RaftTransport
import Synchronization

/// A local three-member cluster in one process for development (`ensemble dev`):
/// three ``EnsembleMember``s named member-1…3, each with its own data
/// directory, peer port (Raft over TCP on loopback) and client port (etcd's
/// gRPC API). A follower hands requests that need the leader to it, so etcdctl
/// works against any endpoint.
public final class DevCluster: Sendable {
    public struct Member: Sendable {
        public var id: NodeID
        public var name: String
        public var clientPort: Int
        public var peerPort: Int
    }

    public let members: [Member]
    private let running: [EnsembleMember]
    /// Members started later with ``join(name:peerPort:clientPort:)``.
    private let joined = Mutex<[EnsembleMember]>([])
    /// Every node in this process by id, so followers reach the leader.
    let nodeDirectory = NodeDirectory()
    private let group: MultiThreadedEventLoopGroup
    public let dataDirectory: String
    public let clusterID: UInt64
    /// The certificates when the cluster runs with TLS (`ensemble dev --tls`).
    public let tls: DevTLS?

    /// `clientPorts`/`peerPorts`: three each (0 picks free ports, for tests).
    /// `spaceQuota`: bytes each member's store may hold (0: etcd's default).
    /// `tls`: both ports inside TLS with client certificates (``DevTLS``).
    /// `configure`: changes every member's configuration (tests).
    public init(
        dataDirectory: String, clientPorts: [Int], peerPorts: [Int], tickInterval: Duration = .milliseconds(100),
        spaceQuota: Int = 0, tls: Bool = false, configure: (inout MemberConfiguration) -> Void = { _ in }
    ) async throws {
        precondition(clientPorts.count == 3 && peerPorts.count == 3, "a dev cluster has three members")
        self.dataDirectory = dataDirectory
        let certificates = tls ? try DevTLS(dataDirectory: dataDirectory) : nil
        self.tls = certificates
        let scheme = tls ? "https" : "http"
        var template = MemberConfiguration()
        template.listenPeerURLs = ["\(scheme)://127.0.0.1:0"]
        certificates?.apply(to: &template)
        let peerTLS = try template.peerTLS()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        self.group = group
        // Peer ports must be known before the initial cluster can be written:
        // bind every peer transport first (port 0 picks a free one, race-free).
        var transports: [(NIOPeerTransport, Int)] = []
        for port in peerPorts {
            let transport = NIOPeerTransport(group: group, tls: peerTLS)
            transports.append((transport, try await transport.listen(host: "127.0.0.1", port: port)))
        }
        let initialCluster = (0..<3).map { "member-\($0 + 1)=\(scheme)://127.0.0.1:\(transports[$0].1)" }.joined(separator: ",")
        let nodes = nodeDirectory
        let lookup: @Sendable (NodeID) -> NodeLoop<KVReplica>? = { id in nodes.nodes.withLock { $0[id] } }
        var started: [EnsembleMember] = []
        do {
            for i in 0..<3 {
                var configuration = template
                configuration.name = "member-\(i + 1)"
                configuration.dataDirectory = "\(dataDirectory)/member-\(i + 1)"
                configuration.listenPeerURLs = ["\(scheme)://127.0.0.1:\(transports[i].1)"]
                configuration.initialAdvertisePeerURLs = configuration.listenPeerURLs
                configuration.initialCluster = initialCluster
                configuration.initialClusterToken = "ensemble-dev"
                configuration.heartbeatInterval = tickInterval
                configuration.electionTimeout = tickInterval * 10
                configuration.quotaBackendBytes = spaceQuota
                configuration.listenClientURLs = ["\(scheme)://127.0.0.1:\(clientPorts[i])"]
                configuration.advertiseClientURLs = configuration.listenClientURLs
                configure(&configuration)
                try configuration.validate()
                let member = try await EnsembleMember.start(
                    configuration, group: group, transport: transports[i].0, peerPort: transports[i].1,
                    leaderInProcess: lookup, logger: EnsembleMember.silent)
                nodes.nodes.withLock { $0[member.id] = member.node }
                started.append(member)
            }
        } catch {
            for member in started { await member.shutdown(handOff: false) }
            for (transport, _) in transports.dropFirst(started.count) { await transport.shutdown() }
            try? await group.shutdownGracefully()
            throw error
        }
        running = started
        clusterID = started.first?.clusterID ?? 0
        members = started.map {
            Member(id: $0.id, name: $0.configuration.name, clientPort: $0.clientPorts.first ?? 0, peerPort: $0.peerPort)
        }
        // Speeds up the first election of a new cluster.
        started.first?.node.campaign()
    }

    /// Starts one more member that joins this cluster after `member add`
    /// (`--initial-cluster-state existing`), listening on `peerPort`.
    public func join(name: String, peerPort: Int) async throws -> EnsembleMember {
        var configuration = MemberConfiguration()
        tls?.apply(to: &configuration)
        let scheme = tls == nil ? "http" : "https"
        configuration.name = name
        configuration.dataDirectory = "\(dataDirectory)/\(name)"
        configuration.listenPeerURLs = ["\(scheme)://127.0.0.1:\(peerPort)"]
        configuration.initialAdvertisePeerURLs = configuration.listenPeerURLs
        configuration.initialClusterState = .existing
        // As `member add` prints it: the founders, then the new member.
        let others = (running + joined.withLock { $0 }).map { "\($0.configuration.name)=\($0.configuration.initialAdvertisePeerURLs.joined(separator: ","))" }
        configuration.initialCluster = (others + ["\(name)=\(scheme)://127.0.0.1:\(peerPort)"]).joined(separator: ",")
        configuration.heartbeatInterval = running.first?.configuration.heartbeatInterval ?? .milliseconds(100)
        configuration.electionTimeout = configuration.heartbeatInterval * 10
        configuration.listenClientURLs = ["\(scheme)://127.0.0.1:0"]
        configuration.advertiseClientURLs = configuration.listenClientURLs
        let nodes = nodeDirectory
        let member = try await EnsembleMember.start(configuration, group: group, leaderInProcess: { id in nodes.nodes.withLock { $0[id] } })
        nodes.nodes.withLock { $0[member.id] = member.node }
        joined.withLock { $0.append(member) }
        return member
    }

    /// The comma-separated client endpoints, for `etcdctl --endpoints=`.
    public var endpoints: String {
        members.map { "\(tls == nil ? "" : "https://")127.0.0.1:\($0.clientPort)" }.joined(separator: ",")
    }

    public func status(of id: NodeID) -> NodeStatus? { running.first { $0.id == id }?.node.status }

    /// A founding member (tests reach inside).
    func member(_ id: NodeID) -> EnsembleMember? { running.first { $0.id == id } }

    /// Waits until a member leads.
    public func waitForLeader(timeout: Duration = .seconds(10)) async throws -> NodeID {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let leader = running.first(where: { $0.node.status.role == .leader }) { return leader.id }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw NodeError.noLeader
    }

    /// Waits until a member leads and every member's table lists every
    /// member's client URLs, as published at start: what `etcdctl ... --cluster`
    /// and `member list` show is then complete.
    @discardableResult
    public func waitUntilReady(timeout: Duration = .seconds(10)) async throws -> NodeID {
        let deadline = ContinuousClock.now + timeout
        let leader = try await waitForLeader(timeout: timeout)
        let ids = running.map(\.id)
        for member in running {
            while await member.node.withMachine({ state in
                ids.allSatisfy { !(state.machine.members.members[$0]?.clientURLs.isEmpty ?? true) }
            }) != true {
                guard ContinuousClock.now < deadline else {
                    throw ConfigurationError("dev cluster: members had not published their client URLs after \(timeout)")
                }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        return leader
    }

    /// Stops every member cleanly: servers, node loops (which sync and close
    /// their logs), transports, threads.
    public func shutdown() async {
        for member in joined.withLock({ $0 }) { await member.shutdown(handOff: false) }
        for member in running { await member.shutdown(handOff: false) }
        try? await group.shutdownGracefully()
    }
}

/// The nodes running in one process, by id.
final class NodeDirectory: Sendable {
    let nodes = Mutex<[NodeID: NodeLoop<KVReplica>]>([:])
}
