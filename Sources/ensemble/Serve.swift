import ArgumentParser
import EnsembleServer
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// `ensemble serve`: one member, with etcd's flags (or its YAML config file).
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one Ensemble member (etcd's flags and config file).",
        discussion: """
            Starting a 3-member cluster on one machine, like etcd:
              ensemble serve --name a --data-dir a.ens --listen-client-urls http://127.0.0.1:2379 \\
                --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \\
                --initial-advertise-peer-urls http://127.0.0.1:2380 \\
                --initial-cluster a=http://127.0.0.1:2380,b=http://127.0.0.1:12380,c=http://127.0.0.1:22380
            (and b, c likewise). Restart with the same command: the data directory
            remembers the member, and the --initial-* flags are then ignored.
            """)

    @Option(name: .customLong("config-file"), help: "YAML file with the flags below as keys (flags are then ignored).")
    var configFile: String?
    @Option(help: "Human-readable name of this member.")
    var name = "default"
    @Option(name: .customLong("data-dir"), help: "Path to the data directory (default: <name>.etcd).")
    var dataDir: String?
    @Option(name: .customLong("listen-client-urls"), help: "URLs to serve clients (etcd gRPC) on (default: http://localhost:2379).")
    var listenClientURLs: String?
    @Option(
        name: .customLong("advertise-client-urls"),
        help: "Client URLs to tell the cluster (default: http://localhost:2379; required with --listen-client-urls).")
    var advertiseClientURLs: String?
    @Option(name: .customLong("listen-metrics-urls"), help: "More URLs serving only /metrics, /health and /version.")
    var listenMetricsURLs = ""
    @Option(name: .customLong("listen-peer-urls"), help: "URL to receive Raft traffic on.")
    var listenPeerURLs = "http://localhost:2380"
    @Option(name: .customLong("initial-advertise-peer-urls"), help: "This member's peer URLs, as the others reach it.")
    var initialAdvertisePeerURLs = "http://localhost:2380"
    @Option(
        name: .customLong("initial-cluster"),
        help: "Founding members: name=peerURL,… (default: <name>=<initial-advertise-peer-urls>, or default=http://localhost:2380).")
    var initialCluster: String?
    @Option(name: .customLong("initial-cluster-state"), help: "new (founding member) or existing (added with member add).")
    var initialClusterState = "new"
    @Option(name: .customLong("initial-cluster-token"), help: "Distinguishes clusters started from the same URLs.")
    var initialClusterToken = "etcd-cluster"
    @Option(name: .customLong("heartbeat-interval"), help: "Milliseconds between heartbeats (one Raft tick).")
    var heartbeatInterval = 100
    @Option(name: .customLong("election-timeout"), help: "Milliseconds without a leader before an election.")
    var electionTimeout = 1000
    @Option(name: .customLong("snapshot-count"), help: "Applied entries between snapshots.")
    var snapshotCount: UInt64 = 100_000
    @Option(name: .customLong("quota-backend-bytes"), help: "Space quota in bytes (0: 2 GiB).")
    var quotaBackendBytes = 0
    @Option(name: .customLong("max-request-bytes"), help: "Largest request message in bytes.")
    var maxRequestBytes = 1_572_864
    @Option(name: .customLong("auto-compaction-mode"), help: "periodic or revision.")
    var autoCompactionMode = "periodic"
    @Option(name: .customLong("auto-compaction-retention"), help: "History to keep: a duration (periodic: 1h, 30m) or a revision count; 0 is off.")
    var autoCompactionRetention = "0"
    @Option(name: .customLong("grpc-keepalive-interval"), help: "Ping a client connection silent this long (a duration: 2h, 30s).")
    var grpcKeepaliveInterval = "2h"
    @Option(name: .customLong("grpc-keepalive-timeout"), help: "Close a pinged connection that stays silent this long.")
    var grpcKeepaliveTimeout = "20s"
    @Option(name: .customLong("grpc-keepalive-min-time"), help: "The shortest interval at which a client may ping; faster pingers are sent away.")
    var grpcKeepaliveMinTime = "5s"
    @Option(
        name: .customLong("experimental-lease-checkpoint-interval"),
        help: "How often the leader replicates leases' remaining TTLs, which a new leader then keeps (0: off, as etcd's default).")
    var leaseCheckpointInterval = "5s"
    @Option(
        name: .customLong("experimental-corrupt-check-time"),
        help: "How often the leader compares every member's data hash with its own and raises CORRUPT on a difference (0s: off).")
    var corruptCheckTime = "0s"
    @Flag(
        name: .customLong("experimental-initial-corrupt-check"),
        help: "Before serving, compare this member's data hash with every other member's and refuse to start on a difference.")
    var initialCorruptCheck = false
    @Option(name: .customLong("event-loop-threads"), help: "Threads serving client and peer connections (0: one per CPU core). Not an etcd flag.")
    var eventLoopThreads = 0
    @Option(name: .customLong("cert-file"), help: "TLS certificate chain (PEM) for https:// client URLs.")
    var certFile = ""
    @Option(name: .customLong("key-file"), help: "TLS private key (PEM) for https:// client URLs.")
    var keyFile = ""
    @Option(name: .customLong("trusted-ca-file"), help: "CA certificates (PEM) that client certificates must chain to.")
    var trustedCAFile = ""
    @Flag(name: .customLong("client-cert-auth"), help: "Require TLS clients to present a certificate signed by --trusted-ca-file.")
    var clientCertAuth = false
    @Option(name: .customLong("peer-cert-file"), help: "TLS certificate chain (PEM) for https:// peer URLs.")
    var peerCertFile = ""
    @Option(name: .customLong("peer-key-file"), help: "TLS private key (PEM) for https:// peer URLs.")
    var peerKeyFile = ""
    @Option(name: .customLong("peer-trusted-ca-file"), help: "CA certificates (PEM) that other members' certificates must chain to.")
    var peerTrustedCAFile = ""
    @Flag(name: .customLong("peer-client-cert-auth"), help: "Accept only members presenting a certificate signed by --peer-trusted-ca-file.")
    var peerClientCertAuth = false
    @Flag(
        name: .customLong("experimental-peer-skip-client-san-verification"),
        help: "Accept a member's client certificate whatever address it connects from (by default it must name that address).")
    var peerSkipClientSANVerification = false
    @Flag(name: .customLong("auto-tls"), help: "https:// client URLs without --cert-file: a self-signed certificate in <data-dir>/fixtures/client.")
    var autoTLS = false
    @Flag(name: .customLong("peer-auto-tls"), help: "https:// peer URLs without --peer-cert-file: self-signed certificates, not checked between members.")
    var peerAutoTLS = false
    @Option(name: .customLong("cipher-suites"), help: "TLS 1.2 cipher suites allowed, comma-separated, by Go's names (empty: the defaults).")
    var cipherSuites = ""
    @Option(name: .customLong("tls-min-version"), help: "Oldest TLS version accepted: TLS1.2 or TLS1.3.")
    var tlsMinVersion = "TLS1.2"
    @Option(name: .customLong("tls-max-version"), help: "Newest TLS version offered: TLS1.2 or TLS1.3 (empty: the newest).")
    var tlsMaxVersion = ""
    @Option(name: .customLong("log-level"), help: "debug, info, warn, error, panic or fatal.")
    var logLevel = "info"
    @Option(name: .customLong("logger"), help: "capnslog (lines of text) or zap (one JSON object per line).")
    var logger = "capnslog"
    @Option(name: .customLong("log-outputs"), help: "default (stderr), stderr, stdout or file paths, comma-separated.")
    var logOutputs = "default"

    /// etcd's log levels as swift-log's (panic and fatal are its most severe).
    static func level(_ name: String) throws -> Logger.Level {
        switch name.lowercased() {
        case "debug": return .debug
        case "info": return .info
        case "warn", "warning": return .warning
        case "error": return .error
        case "panic", "fatal", "dpanic": return .critical
        default: throw ValidationError("--log-level must be debug, info, warn, error, panic or fatal, not '\(name)'")
        }
    }

    /// etcd's boolean flags also come written `--client-cert-auth=true` or
    /// `=false` (Go's flag package; kubeadm's manifests do): rewritten to
    /// the bare flag, or dropped.
    static func etcdBooleans(_ arguments: [String]) -> [String] {
        let booleans = [
            "--client-cert-auth", "--peer-client-cert-auth", "--auto-tls", "--peer-auto-tls", "--experimental-initial-corrupt-check",
            "--experimental-peer-skip-client-san-verification",
        ]
        return arguments.compactMap { argument in
            guard let equals = argument.firstIndex(of: "="), booleans.contains(String(argument[..<equals])) else { return argument }
            switch argument[argument.index(after: equals)...].lowercased() {
            case "true", "1", "t": return String(argument[..<equals])
            case "false", "0", "f": return nil
            default: return argument  // refused by the parser, with its message
            }
        }
    }

    func configurationFromFlags() throws -> MemberConfiguration {
        var c = MemberConfiguration()
        func list(_ value: String) -> [String] { value.split(separator: ",").map(String.init) }
        c.name = name
        c.dataDirectory = dataDir ?? "\(name).etcd"
        // etcd's rule: listening on chosen URLs, the member must say which to advertise.
        if listenClientURLs != nil && advertiseClientURLs == nil {
            throw ValidationError("--advertise-client-urls is required when --listen-client-urls is set explicitly")
        }
        c.listenClientURLs = list(listenClientURLs ?? "http://localhost:2379")
        c.advertiseClientURLs = list(advertiseClientURLs ?? "http://localhost:2379")
        c.listenMetricsURLs = list(listenMetricsURLs)
        c.listenPeerURLs = list(listenPeerURLs)
        c.initialAdvertisePeerURLs = list(initialAdvertisePeerURLs)
        if let initialCluster { c.initialCluster = initialCluster } else { c.deriveInitialClusterFromName() }
        guard let state = MemberConfiguration.ClusterState(rawValue: initialClusterState) else {
            throw ValidationError("--initial-cluster-state must be new or existing")
        }
        c.initialClusterState = state
        c.initialClusterToken = initialClusterToken
        c.heartbeatInterval = .milliseconds(heartbeatInterval)
        c.electionTimeout = .milliseconds(electionTimeout)
        // etcd: 0 means its default.
        c.snapshotCount = snapshotCount == 0 ? 100_000 : snapshotCount
        c.quotaBackendBytes = quotaBackendBytes
        c.maxRequestBytes = maxRequestBytes
        c.autoCompactionMode = autoCompactionMode
        c.autoCompactionRetention = autoCompactionRetention
        c.grpcKeepaliveInterval = grpcKeepaliveInterval
        c.grpcKeepaliveTimeout = grpcKeepaliveTimeout
        c.grpcKeepaliveMinTime = grpcKeepaliveMinTime
        c.eventLoopThreads = eventLoopThreads
        c.leaseCheckpointInterval = leaseCheckpointInterval
        c.corruptCheckTime = corruptCheckTime
        c.initialCorruptCheck = initialCorruptCheck
        c.certFile = certFile
        c.keyFile = keyFile
        c.trustedCAFile = trustedCAFile
        c.clientCertAuth = clientCertAuth
        c.peerCertFile = peerCertFile
        c.peerKeyFile = peerKeyFile
        c.peerTrustedCAFile = peerTrustedCAFile
        c.peerClientCertAuth = peerClientCertAuth
        c.peerSkipClientSANVerification = peerSkipClientSANVerification
        c.autoTLS = autoTLS
        c.peerAutoTLS = peerAutoTLS
        c.cipherSuites = list(cipherSuites)
        c.tlsMinVersion = tlsMinVersion
        c.tlsMaxVersion = tlsMaxVersion
        c.logLevel = logLevel
        c.logger = logger
        c.logOutputs = list(logOutputs)
        return c
    }

    func run() async throws {
        var loaded: MemberConfiguration
        var warnings: [String] = []
        if let configFile {
            let text = try String(contentsOfFile: configFile, encoding: .utf8)
            (loaded, warnings) = try MemberConfiguration.load(yaml: text)
            if loaded.dataDirectory == MemberConfiguration().dataDirectory {
                loaded.dataDirectory = "\(loaded.name).etcd"
            }
            loaded.deriveInitialClusterFromName()
        } else {
            loaded = try configurationFromFlags()
        }
        guard let format = LineLogHandler.Format(logger: loaded.logger) else {
            throw ValidationError("--logger must be capnslog or zap, not '\(loaded.logger)'")
        }
        let level = try Self.level(loaded.logLevel)
        let outputs: LogOutputs
        do { outputs = try LogOutputs(loaded.logOutputs) } catch { throw ValidationError(error.description) }
        LoggingSystem.bootstrap { label in
            var handler = LineLogHandler(label: label, format: format, outputs: outputs)
            handler.logLevel = level
            return handler
        }
        var named = Logger(label: "ensemble")
        named.logLevel = level
        named[metadataKey: "name"] = "\(loaded.name)"
        let logger = named
        let configuration = loaded
        logger.info("starting", metadata: ["data-dir": "\(configuration.dataDirectory)"])
        for warning in warnings { logger.warning("\(warning)") }
        let service = MemberService(configuration, logger: logger) { member in
            logger.info("serving", metadata: [
                "member": "\(String(member.id, radix: 16))", "cluster": "\(String(member.clusterID, radix: 16))",
                "clients": "\(configuration.listenClientURLs.joined(separator: ","))",
                "peers": "\(configuration.listenPeerURLs.joined(separator: ","))",
            ])
            say("try: etcdctl --endpoints=\(configuration.advertiseClientURLs.joined(separator: ",")) endpoint status -w table")
        }
        // SIGTERM and SIGINT shut down gracefully: servers close, the log
        // syncs. A shutdown that hangs (a disk that stopped answering) is
        // cancelled after 30 s, and the process ends 10 s after that at most
        // (exit 1, not ServiceLifecycle's trap); a second Ctrl-C ends it at once.
        let guardRail = ShutdownGuard(limit: .seconds(40))
        var group = ServiceGroupConfiguration(
            services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        group.maximumGracefulShutdownDuration = .seconds(30)
        group.maximumCancellationDuration = nil
        try await ServiceGroup(configuration: group).run()
        withExtendedLifetime(guardRail) {}
    }
}
