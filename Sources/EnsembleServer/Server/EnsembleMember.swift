import EnsembleAPI
import Foundation
import KV
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Raft
import RaftTransport
import SwiftProtobuf
import Synchronization

/// One running Ensemble member: its node loop (Raft, WAL, KV replica), peer
/// transport and gRPC servers with every etcd service. `ensemble serve` runs
/// one; `ensemble dev` runs three in one process.
///
/// Start-up, as etcd's:
/// 1. A data directory with `member.json` restarts that member; the
///    `--initial-*` flags are ignored.
/// 2. Otherwise, with `--initial-cluster-state new`, the member is one of the
///    founders: member ids come from each founder's peer URLs and the cluster
///    token, the cluster id from the member ids, and every founder writes the
///    same bootstrap entries (each carrying a founder's name and peer URLs).
/// 3. With `existing`, the member was added by `member add`: it asks the
///    members in `--initial-cluster` for the member list and takes the id
///    of the member with its peer URLs (``ExistingCluster``), then catches
///    up — learning the cluster id and its own record (a learner or a
///    voter) from the replicated directory — before serving clients.
///
/// Each member publishes its name and client URLs through the log once it
/// runs, and points its peer transport at the directory's peer URLs whenever
/// the directory changes.
public final class EnsembleMember: @unchecked Sendable {
    public let configuration: MemberConfiguration
    public let id: NodeID
    /// The cluster's id; 0 until a joiner has learned it (set before
    /// `start` returns the member).
    public private(set) var clusterID: UInt64
    public let node: NodeLoop<KVReplica>
    public let replica: KVReplica
    /// Prometheus metrics, served at `/metrics` on every client port.
    public let metrics: ServerMetrics
    /// Bound client (gRPC) ports, one per `--listen-client-urls`.
    public let clientPorts: [Int]
    /// Bound metrics ports, one per `--listen-metrics-urls`.
    public let metricsPorts: [Int]
    /// What the metrics ports serve: the client ports' plain HTTP endpoints only.
    let metricsRouter: GRPCRouterBox
    public let peerPort: Int
    let transport: NIOPeerTransport
    let router: GRPCRouterBox
    private let servers: [any Channel]
    /// The gRPC server behind `servers`, which a shutdown stops gracefully.
    private let grpcServer: GRPCServer
    private let publisher: Task<Void, Never>
    /// The leader's auto-compaction loop, when configured.
    private let compactor: Task<Void, Never>?
    private let corruptionMonitor: Task<Void, Never>?
    /// Event loop threads this member started itself (``start(_:log:)``).
    private let ownedGroup = Mutex<MultiThreadedEventLoopGroup?>(nil)
    private let peers = Mutex<[NodeID: NIOPeerTransport.Peer]>([:])
    /// Hands requests to a leader in another process.
    let forwarder: LeaderForwarder
    private let logger: Logger
    /// Set once the directory shows this member removed; waiters are resumed.
    /// Whether this member was removed, whether ``wakeWaiters()`` ran (a
    /// later wait returns at once: a shutdown signal that came before the
    /// wait began is not lost), and who waits.
    private let removal = Mutex<(removed: Bool, woken: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, false, []))

    /// Starts a member on event loop threads of its own, stopped by ``shutdown(handOff:)``.
    public static func start(
        _ configuration: MemberConfiguration, logger: Logger = EnsembleMember.silent
    ) async throws -> EnsembleMember {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.resolvedEventLoopThreads)
        do {
            let member = try await start(configuration, group: group, logger: logger)
            member.ownedGroup.withLock { $0 = group }
            return member
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Starts a member. `leaderInProcess` lets followers hand requests to a
    /// leader in the same process (`ensemble dev`). `log` reports progress.
    public static func start(
        _ configuration: MemberConfiguration, group: any EventLoopGroup,
        leaderInProcess: @escaping @Sendable (NodeID) -> NodeLoop<KVReplica>? = { _ in nil },
        logger: Logger = EnsembleMember.silent
    ) async throws -> EnsembleMember {
        try configuration.validate(initialized: try MemberIdentity.load(from: configuration.dataDirectory) != nil)
        let peerListen = configuration.listenPeerURLs.compactMap(HostPort.init(url:))
        guard !peerListen.isEmpty, peerListen.count == configuration.listenPeerURLs.count else {
            throw ConfigurationError("--listen-peer-urls: no usable URL")
        }
        let transport = NIOPeerTransport(group: group, tls: try configuration.peerTLS(logger: logger))
        do {
            // Every URL is bound, as etcd binds them; the first's port is reported.
            var peerPorts: [Int] = []
            for listen in peerListen { peerPorts.append(try await transport.listen(host: listen.host, port: listen.port)) }
            return try await start(configuration, group: group, transport: transport, peerPort: peerPorts[0],
                                   leaderInProcess: leaderInProcess, logger: logger)
        } catch {
            await transport.shutdown()
            throw error
        }
    }

    /// Starts a member on a peer transport that already listens (`ensemble dev`
    /// binds every peer port first, so the initial cluster names real ports).
    static func start(
        _ configuration: MemberConfiguration, group: any EventLoopGroup, transport: NIOPeerTransport, peerPort: Int,
        leaderInProcess: @escaping @Sendable (NodeID) -> NodeLoop<KVReplica>?, logger: Logger
    ) async throws -> EnsembleMember {
        let dataDirectory = configuration.dataDirectory
        var identity = try MemberIdentity.load(from: dataDirectory)
        if let identity, identity.name != configuration.name {
            throw ConfigurationError(
                "\(dataDirectory) belongs to member \(identity.name), not \(configuration.name) (--name)")
        }
        var bootstrap: [NodeID]?
        var contexts: [NodeID: [UInt8]] = [:]
        if identity == nil, FileManager.default.fileExists(atPath: dataDirectory + "/member/snap/db") {
            // etcd's bbolt file: its WAL uses the same file names as ours, and
            // opening it would take its segments for torn ones of ours.
            throw ConfigurationError(
                "\(dataDirectory) is an etcd data directory (it has member/snap/db): Ensemble does not read etcd's files "
                    + "and leaves them as they are; give a new --data-dir and copy the keys over (etcdctl make-mirror)")
        }
        if identity == nil {
            switch configuration.initialClusterState {
            case .new:
                let founders = try configuration.parsedInitialCluster().map { founder in
                    (founder.name, founder.peerURLs,
                     ClusterService.memberID(peerURLs: founder.peerURLs, salt: configuration.initialClusterToken))
                }
                let clusterID = ClusterService.clusterID(memberIDs: founders.map(\.2))
                guard let me = founders.first(where: { $0.0 == configuration.name }) else {
                    throw ConfigurationError("couldn't find local name \"\(configuration.name)\" in the initial cluster configuration")
                }
                for (name, peerURLs, id) in founders {
                    // Identical on every founder: the bootstrap entries must match.
                    contexts[id] = KVReplica.memberContext(Member(id: id, name: name, peerURLs: peerURLs), clusterID: clusterID)
                }
                bootstrap = founders.map(\.2)
                identity = MemberIdentity(name: configuration.name, memberID: me.2, clusterID: clusterID)
                logger.info("founding a new cluster", metadata: ["cluster": "\(hex(clusterID))", "member": "\(hex(me.2))"])
            case .existing:
                let local = try configuration.parsedInitialCluster()
                let others = local.filter { $0.name != configuration.name }.flatMap(\.peerURLs)
                logger.info("joining: asking the other members in --initial-cluster for the member list", metadata: ["peer-urls": "\(others.joined(separator: ","))"])
                guard let existing = await ExistingCluster.fetch(from: others, tls: transport.tls?.client(), group: group, logger: logger)
                else {
                    throw ConfigurationError("cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs")
                }
                guard let id = try existing.assignIDs(local: local)[configuration.name] else {
                    throw ConfigurationError("error validating peerURLs \(existing): no member has the peer URLs of \(configuration.name)")
                }
                // The cluster id stays 0 until this member has caught up (below).
                identity = MemberIdentity(name: configuration.name, memberID: id, clusterID: 0)
                logger.info("joining", metadata: ["cluster": "\(hex(existing.clusterID))", "member": "\(hex(id))"])
            }
        }
        guard var identity else { throw ConfigurationError("no identity") }
        // Announce ourselves on every peer connection, so a member whose
        // directory does not list us yet (a joiner) can answer.
        if let advertised = configuration.initialAdvertisePeerURLs.lazy.compactMap(HostPort.init(url:)).first {
            transport.advertise(identity.memberID, as: .init(host: advertised.host, port: advertised.port))
        }

        let metrics = ServerMetrics(member: identity.memberID)
        transport.observe(with: metrics)
        var options = NodeLoop<KVReplica>.Options()
        var nodeLogger = logger
        nodeLogger[metadataKey: "member"] = "\(hex(identity.memberID))"
        options.observer = LoggingNodeObserver(next: metrics, logger: nodeLogger)
        options.tickInterval = configuration.heartbeatInterval
        options.snapshotEvery = configuration.snapshotCount
        options.snapshotKeep = max(configuration.snapshotCount / 2, 1)
        var raft = RaftConfig(id: identity.memberID)
        raft.electionTick = configuration.electionTicks
        raft.seed = UInt64.random(in: 1...UInt64.max)
        // Leases get an election timeout's worth of grace twice over when a
        // new leader takes them over (2 s at the default; etcd gives one).
        let replica = KVReplica(
            // etcd: 0 is the default (2 GiB), a negative value disables the quota.
            space: SpaceQuota(
                limit: configuration.quotaBackendBytes == 0 ? 2 << 30 : max(0, configuration.quotaBackendBytes)),
            checkpointInterval: try configuration.leaseCheckpointSeconds(),
            promotionGrace: max(2, 2 * configuration.electionTimeout.inSeconds))
        // Superseded values go to files beside the WAL (a cache the snapshot
        // and WAL rebuild on restart), so memory follows the live keys.
        // Made by this start: removed again if the start fails before the
        // identity is saved, so a retry with other flags (another port, a
        // corrected --initial-cluster) founds afresh instead of finding a
        // bootstrapped log its new identity does not match (review finding).
        let memberDirectory = dataDirectory + "/member"
        let createdHere = !FileManager.default.fileExists(atPath: memberDirectory)
        try FileManager.default.createDirectory(atPath: memberDirectory, withIntermediateDirectories: true)
        replica.machine.store.historyValues = HistoryValueLog(directory: dataDirectory + "/member/history") { [logger] reason in
            logger.warning("\(reason)")
        }
        // Opening the log replays it and restores the snapshot: disk work.
        // Checked before the log is opened: a failure after it must stop the node.
        let keepalive = try configuration.grpcKeepalive()
        let machine = Handover(value: replica)
        let node = try await offPool { [raft, bootstrap, contexts, options] in
            try NodeLoop(
                config: raft, directory: dataDirectory + "/member", bootstrap: bootstrap, bootstrapContexts: contexts,
                machine: machine.value, transport: transport, options: options)
        }

        let router = GRPCRouterBox()
        router.observe(with: metrics)
        var servers: [any Channel] = []
        var clientPorts: [Int] = []
        var metricsPorts: [Int] = []
        let metricsRouter = GRPCRouterBox()
        let grpcServer = GRPCServer(
            group: group, router: router, maxRequestBytes: configuration.maxRequestBytes + MemberConfiguration.grpcOverheadBytes,
            keepalive: keepalive)
        do {
            let tls = try configuration.clientTLSServerContext(logger: logger)
            for url in configuration.listenClientURLs {
                let secure = ClientListenAddress.isSecure(url) ? tls : nil
                switch ClientListenAddress(url: url) {
                case .tcp(let address)?:
                    let server = try await grpcServer.listen(host: address.host, port: address.port, tls: secure)
                    servers.append(server)
                    clientPorts.append(server.localAddress?.port ?? address.port)
                case .unix(let path)?:
                    servers.append(try await grpcServer.listen(unixSocket: path, tls: secure))
                    clientPorts.append(0)  // (kept in step with the URLs)
                case nil:
                    throw ConfigurationError("--listen-client-urls: \(url)")
                }
            }
            for url in configuration.listenMetricsURLs {
                let secure = ClientListenAddress.isSecure(url) ? tls : nil
                switch ClientListenAddress(url: url) {
                case .tcp(let address)?:
                    let server = try await grpcServer.listen(host: address.host, port: address.port, tls: secure, router: metricsRouter)
                    servers.append(server)
                    metricsPorts.append(server.localAddress?.port ?? address.port)
                case .unix(let path)?:
                    servers.append(try await grpcServer.listen(unixSocket: path, tls: secure, router: metricsRouter))
                    metricsPorts.append(0)  // (kept in step with the URLs)
                case nil:
                    throw ConfigurationError("--listen-metrics-urls: \(url)")
                }
            }
        } catch {
            await grpcServer.shutdown(grace: .zero)
            // Never started: this closes its log (a sync: off the
            // cooperative pool) and releases the data directory, so a
            // caller may start the member again.
            await offPool { node.stop() }
            if createdHere { try? FileManager.default.removeItem(atPath: memberDirectory) }
            throw error
        }
        // A client URL advertised with port 0 names the port actually bound.
        var configuration = configuration
        configuration.advertiseClientURLs = configuration.advertiseClientURLs.enumerated().map { index, url in
            guard HostPort(url: url)?.port == 0, clientPorts.indices.contains(index), clientPorts[index] != 0 else { return url }
            return url.replacingOccurrences(of: ":0", with: ":\(clientPorts[index])")
        }
        let member = EnsembleMember(
            configuration: configuration, id: identity.memberID, clusterID: identity.clusterID, node: node, replica: replica,
            metrics: metrics,
            clientPorts: clientPorts, metricsPorts: metricsPorts, metricsRouter: metricsRouter, peerPort: peerPort,
            transport: transport, router: router, servers: servers,
            grpcServer: grpcServer, leaderInProcess: leaderInProcess, logger: logger)
        // A member removed while it was down or cut off never applies its own
        // removal: the others answer its hello with the removed notice.
        transport.onRemoved { [weak member] in member?.markRemoved() }
        node.perform { [weak member, transport] replica in
            replica.onMembersChanged = { [unowned replica] members in
                member?.pointTransport(at: members)
                transport.setRemoved(Self.removedIDs(replica.machine.members))
                if let member, replica.machine.members.removed.contains(member.id) { member.markRemoved() }
            }
            member?.pointTransport(at: replica.machine.members.sorted)
            transport.setRemoved(Self.removedIDs(replica.machine.members))
            // Restarted from a snapshot that records its own removal (killed
            // during the stop that follows it): it stops again at once.
            if let member, replica.machine.members.removed.contains(member.id) { member.markRemoved() }
        }
        node.start()

        if identity.clusterID == 0 {
            // A joiner learns the cluster id from the directory it replicates,
            // and serves once it has its own membership entry: until then it
            // would not know to refuse what a learner must (etcd's joiner
            // reads its record from a peer before it serves).
            let me = identity.memberID
            do {
                while true {
                    let directory = await node.withMachine { $0.machine.members }
                    guard let directory else { throw NodeError.stopped }
                    let status = node.status
                    let configured = status.voters.contains(me) || status.learners.contains(me)
                    identity.clusterID = directory.clusterID
                    if directory.clusterID != 0, directory.members[me] != nil && configured { break }
                    // Removed before it caught up (peers answer its hello
                    // "removed"; the leader sends it nothing more): it goes
                    // on to stop as a removed member does.
                    if directory.removed.contains(me) || member.isRemoved { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
            } catch {
                await member.shutdown(handOff: false)
                if createdHere { try? FileManager.default.removeItem(atPath: memberDirectory) }
                throw error
            }
            logger.info("caught up", metadata: ["cluster": "\(hex(identity.clusterID))"])
        }
        // A joiner removed before it learned the cluster keeps no identity.
        if identity.clusterID != 0 {
            do {
                try identity.save(in: dataDirectory)
            } catch {
                await member.shutdown(handOff: false)
                throw error
            }
        }
        if configuration.initialCorruptCheck {
            do {
                try await member.checkInitialHashes()
            } catch {
                await member.shutdown(handOff: false)
                throw error
            }
        }
        member.install(clusterID: identity.clusterID, leaderInProcess: leaderInProcess)
        return member
    }

    private init(
        configuration: MemberConfiguration, id: NodeID, clusterID: UInt64, node: NodeLoop<KVReplica>, replica: KVReplica,
        metrics: ServerMetrics, clientPorts: [Int], metricsPorts: [Int], metricsRouter: GRPCRouterBox, peerPort: Int,
        transport: NIOPeerTransport, router: GRPCRouterBox, servers: [any Channel],
        grpcServer: GRPCServer, leaderInProcess: @escaping @Sendable (NodeID) -> NodeLoop<KVReplica>?, logger: Logger
    ) {
        self.logger = logger
        self.configuration = configuration
        self.id = id
        self.clusterID = clusterID
        self.node = node
        self.replica = replica
        self.metrics = metrics
        self.clientPorts = clientPorts
        self.metricsPorts = metricsPorts
        self.metricsRouter = metricsRouter
        self.peerPort = peerPort
        self.transport = transport
        self.router = router
        self.servers = servers
        self.grpcServer = grpcServer
        // Members of a cluster that serves clients over TLS reach each other's
        // client ports over TLS too.
        var forwardTLS: ReloadingTLSContext?
        if configuration.listenClientURLs.contains(where: ClientListenAddress.isSecure) {
            forwardTLS = try? configuration.clientTLSClientContext(logger: logger)
        }
        self.forwarder = LeaderForwarder(
            group: servers.first?.eventLoop ?? MultiThreadedEventLoopGroup.singleton, tls: forwardTLS,
            peerTLS: transport.tls?.client)

        let routing = LeaderRouting(node: node, leaderInProcess: leaderInProcess)
        let name = configuration.name
        let clientURLs = configuration.advertiseClientURLs
        if let policy = try? AutoCompactionPolicy.parse(
            mode: configuration.autoCompactionMode, retention: configuration.autoCompactionRetention)
        {
            self.compactor = Task { await Self.autoCompact(policy, node: node, routing: routing) }
        } else {
            self.compactor = nil
        }
        if let interval = try? configuration.corruptCheckInterval() {
            let monitor = CorruptionMonitor(interval: interval, node: node, routing: routing, forwarder: forwarder, logger: logger)
            self.corruptionMonitor = Task { await monitor.run() }
        } else {
            self.corruptionMonitor = nil
        }
        self.publisher = Task {
            await Self.publish(name: name, clientURLs: clientURLs, id: id, node: node, routing: routing)
        }
    }

    /// Installs the etcd services (once the cluster id is known).
    private func install(clusterID: UInt64, leaderInProcess: @escaping @Sendable (NodeID) -> NodeLoop<KVReplica>?) {
        self.clusterID = clusterID
        var routes = GRPCRouter()
        let space = replica.space
        KVService(
            node: node, clusterID: clusterID, space: space, maxRequestBytes: configuration.maxRequestBytes,
            leaderInProcess: leaderInProcess
        ).register(on: &routes)
        LeaseService(
            node: node, clusterID: clusterID, space: space, leaderInProcess: leaderInProcess, forwarder: forwarder,
            minimumTTL: LeaseService.minimumTTL(electionTicks: configuration.electionTicks, heartbeat: configuration.heartbeatInterval)
        ).register(on: &routes)
        if let loop = servers.first?.eventLoop {
            WatchService(node: node, clusterID: clusterID, on: loop).register(on: &routes)
        }
        ClusterService(node: node, leaderInProcess: leaderInProcess).register(on: &routes)
        MaintenanceService(
            node: node, clusterID: clusterID, space: space, summary: replica.summary, leaderInProcess: leaderInProcess
        ).register(on: &routes)
        HealthService(node: node).register(on: &routes)
        MemberEndpoints(node: node, metrics: metrics, space: space, summary: replica.summary, logger: logger).install(on: &routes)
        forwarder.install(on: &routes)
        let node = self.node
        LearnerGate.install(on: &routes) { node.isLearner }
        // etcd's interceptor order: the learner's refusal, then the leader's.
        routes.leaderRequired = { path, request in
            if node.isLearner && !LearnerGate.servedByLearner(path, request) { return LearnerGate.refusal }
            return node.knowsLeader ? nil : .unavailable("etcdserver: no leader")
        }
        router.install(routes)
        // Followers forward to the peer port (docs/api.md "Where the leader
        // is needed"). Served only from now on: before, a follower finds no
        // HTTP/2 there and turns to the client URL, rather than hear UNIMPLEMENTED.
        var forwarded = GRPCRouter()
        forwarded.unary = routes.unary.filter { $0.key.hasPrefix(LeaderForwarder.prefix + "/") }
        forwarded.leaderRequired = routes.leaderRequired
        let peerRouter = GRPCRouterBox(forwarded)
        transport.serveHTTP2 { [maxRequestBytes = grpcServer.maxRequestBytes, keepalive = grpcServer.keepalive] pipeline in
            try pipeline.addHandler(GRPCServerHandler(router: peerRouter, maxRequestBytes: maxRequestBytes, keepalive: keepalive))
        }
        var httpOnly = GRPCRouter()
        httpOnly.http = routes.http
        metricsRouter.install(httpOnly)
    }

    /// A logger that drops everything (tests, embedding).
    public static let silent = Logger(label: "ensemble", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Resumes every ``waitUntilRemoved()`` without a removal (shutting
    /// down), and those that begin later.
    public func wakeWaiters() {
        let waiters = removal.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.woken = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    public var isRemoved: Bool { removal.withLock { $0.removed } }

    /// Returns once this member has been removed from the cluster (`member
    /// remove`): like etcd's, it should then stop, as it will never hear from
    /// the cluster again. Also returns on ``wakeWaiters()`` (before or
    /// during the wait) and when the waiting task is cancelled.
    public func waitUntilRemoved() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow = removal.withLock { state -> Bool in
                    if state.removed || state.woken { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            wakeWaiters()
        }
    }

    /// Removed ids that are not members again.
    static func removedIDs(_ table: MemberTable) -> Set<NodeID> {
        table.removed.subtracting(table.members.keys)
    }

    func markRemoved() {
        let waiters = removal.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.removed else { return [] }
            state.removed = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// `--experimental-initial-corrupt-check`: throws when another member's
    /// history differs from this one's at the same revision and compaction.
    func checkInitialHashes() async throws {
        let monitor = CorruptionMonitor(interval: .zero, node: node, routing: LeaderRouting(node: node), forwarder: forwarder, logger: logger)
        let findings = await monitor.initialCheck(replayedThrough: node.startCommit)
        guard findings.isEmpty else {
            for finding in findings { logger.error("initial corruption check: \(finding.reason)") }
            throw DataInconsistency(member: id)
        }
    }

    /// Keeps the transport's addresses in step with the directory.
    func pointTransport(at members: [Member]) {
        forwarder.setClientURLs(Dictionary(members.map { ($0.id, $0.clientURLs) }, uniquingKeysWith: { a, _ in a }))
        forwarder.setPeerURLs(Dictionary(members.map { ($0.id, $0.peerURLs) }, uniquingKeysWith: { a, _ in a }))
        for member in members where member.id != id {
            guard let address = member.peerURLs.lazy.compactMap(HostPort.init(url:)).first else { continue }
            let peer = NIOPeerTransport.Peer(host: address.host, port: address.port)
            let changed = peers.withLock { known -> Bool in
                guard known[member.id] != peer else { return false }
                known[member.id] = peer
                return true
            }
            if changed { transport.setPeer(member.id, peer) }
        }
    }

    /// Publishes this member's name and client URLs through the log (etcd's
    /// publish), retrying until the directory shows them.
    private static func publish(
        name: String, clientURLs: [String], id: NodeID, node: NodeLoop<KVReplica>, routing: LeaderRouting
    ) async {
        while !Task.isCancelled {
            guard let current = await node.withMachine({ $0.machine.members.members[id] }) else { return }
            if let current, current.name == name, current.clientURLs == clientURLs { return }
            if current != nil {
                var command = Ensemble_V1_Command()
                command.memberAttributes.id = id
                command.memberAttributes.name = name
                command.memberAttributes.clientUrls = clientURLs
                // Through the log like any write: a follower forwards it to
                // the leader over the peer transport. (There is no client
                // call for it: a client could otherwise rename members or
                // point followers' forwarding at a host of its choosing.)
                _ = await routing.submit(command)
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    /// Runs the auto-compaction policy while this member leads: compactions
    /// go through the log like any write.
    private static func autoCompact(_ policy: AutoCompactionPolicy, node: NodeLoop<KVReplica>, routing: LeaderRouting) async {
        var policy = policy
        let clock = ContinuousClock()
        let start = clock.now
        while !Task.isCancelled {
            try? await Task.sleep(for: policy.checkInterval)
            guard node.status.role == .leader,
                let revision = await node.withMachine({ $0.machine.store.revision }),
                let target = policy.observe(now: clock.now - start, revision: revision)
            else { continue }
            var command = Ensemble_V1_Command()
            command.compaction.revision = target
            _ = await routing.submit(command)
        }
    }

    /// A leader that stops hands leadership to its most up-to-date voter
    /// first, as etcd does (TransferLeadershipOnShutdown): the cluster then
    /// has a leader again within a round trip, instead of standing without
    /// one for an election timeout as after a crash. Gives up after one
    /// election timeout; the others then elect a leader as after a crash.
    private func handOffLeadership() async {
        let status = node.status
        if isRemoved {
            // A removed leader hands over inside Raft. It stops only once
            // another member leads (or after two election timeouts, as etcd
            // delays its stop): a member that has not yet heard the removal
            // committed still counts this one's vote, and in a cluster of two
            // could never win an election without it (review finding).
            guard status.running, status.role == .leader else { return }
            _ = await waitForAnotherLeader(until: ContinuousClock.now + configuration.electionTimeout * 2)
            return
        }
        guard status.running, status.role == .leader, status.voters.contains(id) else { return }
        // A peer heard from lately, the most up to date first (a dead one's
        // match index stays where it stopped).
        let others = status.voters.filter { $0 != id }
        let active = others.filter { status.activePeers.contains($0) }
        let pool = active.isEmpty ? others : active
        guard let target = pool.max(by: { (status.matchIndexes[$0] ?? 0) < (status.matchIndexes[$1] ?? 0) }) else { return }
        node.transferLeadership(to: target)
        if !(await waitForAnotherLeader(until: ContinuousClock.now + configuration.electionTimeout)) {
            logger.warning("could not hand leadership over before stopping", metadata: ["to": "\(hex(target))"])
        }
    }

    /// Waits until another member leads (true), this node stops, or `deadline`.
    private func waitForAnotherLeader(until deadline: ContinuousClock.Instant) async -> Bool {
        while ContinuousClock.now < deadline {
            let now = node.status
            if !now.running { return false }
            if now.leader != .none && now.leader != id {
                logger.info("handed leadership over before stopping", metadata: ["to": "\(hex(now.leader))"])
                return true
            }
            do { try await Task.sleep(for: .milliseconds(5)) } catch { return false }
        }
        return false
    }

    /// Stops serving (clients hear GOAWAY, and calls already open get a
    /// moment to finish), then the node (which syncs and closes its log),
    /// then the transport.
    ///
    /// `handOff`: a leader first hands leadership to another member (not
    /// worth it when the whole cluster stops, as `ensemble dev` does).
    public func shutdown(handOff: Bool = true) async {
        if handOff { await handOffLeadership() }
        publisher.cancel()
        compactor?.cancel()
        corruptionMonitor?.cancel()
        await grpcServer.shutdown(grace: .seconds(1))
        await forwarder.shutdown()
        // Waits for the loop's last cycle, the applier's queue and a final
        // sync: seconds if a snapshot is being written.
        let node = self.node
        await offPool { node.stop() }
        await transport.shutdown()
        if let group = ownedGroup.withLock({ $0.take() }) { try? await group.shutdownGracefully() }
    }
}

func hex(_ id: UInt64) -> String { String(id, radix: 16) }

/// The initial corruption check found this member's data unlike its peers'
/// (etcd's words).
public struct DataInconsistency: Error, Equatable, CustomStringConvertible {
    public var member: UInt64
    public var description: String { "\(hex(member)) found data inconsistency with peers" }
}
