import EnsembleClient
import Foundation
import NIOCore

/// How one member is started: etcd's flag names and meanings, so an etcd
/// command line or config file carries over. `ensemble serve` fills it from
/// flags or YAML; `ensemble dev` builds three.
public struct MemberConfiguration: Sendable {
    public enum ClusterState: String, Sendable {
        /// A founding member of a new cluster (`--initial-cluster` lists all).
        case new
        /// A member added to a running cluster with `member add`.
        case existing
    }

    /// `--name`: human-readable name, matched against `--initial-cluster`.
    public var name = "default"
    /// `--data-dir`: the WAL, snapshots and member.json.
    public var dataDirectory = "default.etcd"
    /// `--listen-client-urls`: where the etcd gRPC API is served.
    public var listenClientURLs = ["http://localhost:2379"]
    /// `--advertise-client-urls`: what other members and clients are told.
    public var advertiseClientURLs = ["http://localhost:2379"]
    /// `--listen-metrics-urls`: more ports serving only `/metrics`, `/health`
    /// and `/version` (plain HTTP; https ones use the client certificate).
    public var listenMetricsURLs: [String] = []
    /// `--listen-peer-urls`: where Raft traffic is received.
    public var listenPeerURLs = ["http://localhost:2380"]
    /// `--initial-advertise-peer-urls`: this member's peer URLs, as the others reach it.
    public var initialAdvertisePeerURLs = ["http://localhost:2380"]
    /// `--initial-cluster`: `name=peerURL,…` of the founding members. Ignored
    /// once the data directory holds a member, as in etcd.
    public var initialCluster = "default=http://localhost:2380"
    /// `--initial-cluster-state`.
    public var initialClusterState = ClusterState.new
    /// `--initial-cluster-token`: distinguishes clusters started from the same
    /// URLs (mixed into member and cluster ids).
    public var initialClusterToken = "etcd-cluster"
    /// `--heartbeat-interval` (ms): one Raft tick.
    public var heartbeatInterval: Duration = .milliseconds(100)
    /// `--election-timeout` (ms): a multiple of the heartbeat.
    public var electionTimeout: Duration = .milliseconds(1000)
    /// `--snapshot-count`: applied entries between snapshots (etcd 3.4's default).
    public var snapshotCount: UInt64 = 100_000
    /// `--quota-backend-bytes`: the space quota (0: etcd's default, 2 GiB;
    /// negative: no quota, as in etcd).
    public var quotaBackendBytes = 0
    /// `--max-request-bytes`: the largest write request (etcd: 1.5 MiB);
    /// messages up to 512 KiB more pass the transport (reads are bound by
    /// that alone), as in etcd.
    public var maxRequestBytes = Self.defaultMaxRequestBytes
    public static let defaultMaxRequestBytes = 1_572_864
    /// etcd's grpcOverheadBytes: what the transport allows beyond `--max-request-bytes`.
    public static let grpcOverheadBytes = 512 * 1024
    /// `--log-level`: debug, info, warn, error, panic or fatal (etcd's).
    public var logLevel = "info"
    /// `--logger`: `capnslog` (lines of text, etcd 3.4's default) or `zap`
    /// (one JSON object per line).
    public var logger = "capnslog"
    /// `--log-outputs`: `default` (standard error), `stderr`, `stdout` or file paths.
    public var logOutputs = ["default"]
    /// `--cert-file`, `--key-file`: the certificate chain and private key
    /// (PEM) served on `https://` listen-client-urls.
    public var certFile = ""
    public var keyFile = ""
    /// `--trusted-ca-file`: the CA certificates (PEM) that client
    /// certificates must chain to under `--client-cert-auth`.
    public var trustedCAFile = ""
    /// `--client-cert-auth`: TLS clients must present a certificate signed
    /// by the trusted CA.
    public var clientCertAuth = false
    /// `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`,
    /// `--peer-client-cert-auth`: the same for `https://` peer URLs.
    public var peerCertFile = ""
    public var peerKeyFile = ""
    public var peerTrustedCAFile = ""
    public var peerClientCertAuth = false
    /// `--experimental-peer-skip-client-san-verification`: accept a member's
    /// client certificate whatever address it connects from (etcd's flag;
    /// by default the certificate must name that address:
    /// `ClientCertificateAddress`).
    public var peerSkipClientSANVerification = false
    /// `--auto-tls`, `--peer-auto-tls`: for `https://` URLs without
    /// certificate files, a self-signed certificate made in
    /// `<data-dir>/fixtures/client` or `/peer` (and kept for restarts), as
    /// etcd does. Encrypted but not authenticated: clients need
    /// `--insecure-skip-tls-verify`, and members do not check each other's.
    /// Ignored when the certificate files are given.
    public var autoTLS = false
    public var peerAutoTLS = false
    /// `--cipher-suites`: the TLS 1.2 cipher suites allowed on both ports, by
    /// Go's names (etcd's); empty: the TLS library's defaults. TLS 1.3 suites
    /// are not configurable (nor are they in Go).
    public var cipherSuites: [String] = []
    /// `--tls-min-version`, `--tls-max-version` (etcd 3.5): TLS1.2 or
    /// TLS1.3; an empty maximum is the newest.
    public var tlsMinVersion = "TLS1.2"
    public var tlsMaxVersion = ""
    /// `--auto-compaction-mode`: periodic or revision.
    public var autoCompactionMode = "periodic"
    /// `--auto-compaction-retention`: a duration (periodic) or a revision
    /// count (revision); "0" turns auto-compaction off (etcd's default).
    public var autoCompactionRetention = "0"
    /// `--grpc-keepalive-interval`: a client connection silent this long is
    /// pinged (etcd's default: 2 h).
    public var grpcKeepaliveInterval = "2h"
    /// `--grpc-keepalive-timeout`: how long the ping may go unanswered before
    /// the connection is closed (etcd's default: 20 s).
    public var grpcKeepaliveTimeout = "20s"
    /// `--grpc-keepalive-min-time`: the shortest interval at which a client
    /// may ping (etcd's default: 5 s).
    public var grpcKeepaliveMinTime = "5s"
    /// `--experimental-lease-checkpoint-interval`: how often the leader
    /// replicates every lease's remaining TTL, so that a new leader goes on
    /// from there instead of granting the whole TTL again; "0" turns
    /// checkpoints off (etcd's default, `--experimental-enable-lease-checkpoint`
    /// false). etcd's interval, when enabled, is 5 min; Ensemble checkpoints
    /// every 5 s by default, so a failover costs a lease at most 5 s more
    /// (each round's checkpoints are spread over the interval).
    public var leaseCheckpointInterval = "5s"
    /// `--experimental-corrupt-check-time`: how often the leader compares
    /// every member's history hash with its own and raises CORRUPT for a
    /// member that differs (``CorruptionCheck``); "0s", etcd's default, is off.
    public var corruptCheckTime = "0s"
    /// `--experimental-initial-corrupt-check`: before serving clients, a
    /// restarted member compares its history hash with every other member's
    /// at its revision and refuses to start when one differs.
    public var initialCorruptCheck = false
    /// `--event-loop-threads` (Ensemble's own): threads serving client and
    /// peer connections; 0, the default, is one per CPU core. Raft and the
    /// store run on two threads of their own besides.
    public var eventLoopThreads = 0

    public init() {}

    /// How often to run the corruption check; nil when it is off.
    public func corruptCheckInterval() throws(ConfigurationError) -> Duration? {
        guard let interval = GoDuration.parse(corruptCheckTime), interval >= .zero else {
            throw ConfigurationError("--experimental-corrupt-check-time: \"\(corruptCheckTime)\" is not a duration such as 1m or 30s")
        }
        return interval > .zero ? interval : nil
    }

    /// The keepalive policy for client connections, from the three flags.
    /// An interval or timeout of 0 leaves both at grpc-go's defaults (2 h,
    /// 20 s), as etcd then passes no keepalive parameters ("0 to disable").
    public func grpcKeepalive() throws(ConfigurationError) -> GRPCKeepalive {
        guard var interval = GoDuration.parse(grpcKeepaliveInterval), interval >= .zero else {
            throw ConfigurationError("--grpc-keepalive-interval: \"\(grpcKeepaliveInterval)\" is not a duration such as 2h or 30s")
        }
        guard var timeout = GoDuration.parse(grpcKeepaliveTimeout), timeout >= .zero else {
            throw ConfigurationError("--grpc-keepalive-timeout: \"\(grpcKeepaliveTimeout)\" is not a duration such as 20s")
        }
        if interval == .zero || timeout == .zero {
            (interval, timeout) = (GRPCKeepalive.etcd.interval, GRPCKeepalive.etcd.timeout)
        }
        guard var minimum = GoDuration.parse(grpcKeepaliveMinTime), minimum >= .zero else {
            throw ConfigurationError("--grpc-keepalive-min-time: \"\(grpcKeepaliveMinTime)\" is not a duration such as 5s")
        }
        // etcd sets no enforcement policy for 0, so grpc-go's default holds:
        // clients may ping every 5 minutes at most (not: as often as they like).
        if minimum == .zero { minimum = .seconds(300) }
        return GRPCKeepalive(interval: interval, timeout: timeout, minimumTime: minimum)
    }

    /// ``leaseCheckpointInterval`` in seconds (0: off).
    public func leaseCheckpointSeconds() throws(ConfigurationError) -> Double {
        guard let interval = GoDuration.parse(leaseCheckpointInterval), interval >= .zero else {
            throw ConfigurationError(
                "--experimental-lease-checkpoint-interval: \"\(leaseCheckpointInterval)\" is not a duration such as 5s or 5m")
        }
        return interval.inSeconds
    }

    /// The event loop threads to start (``eventLoopThreads``, 0 resolved).
    public var resolvedEventLoopThreads: Int {
        eventLoopThreads > 0 ? eventLoopThreads : max(1, System.coreCount)
    }

    /// The founding members, in `--initial-cluster` order.
    public func parsedInitialCluster() throws(ConfigurationError) -> [(name: String, peerURLs: [String])] {
        var members: [(name: String, peerURLs: [String])] = []
        for entry in initialCluster.split(separator: ",") {
            // A member added but not started has no name yet: `member add`
            // prints it as `=url`, and etcd takes that.
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[1].isEmpty else {
                throw ConfigurationError("--initial-cluster: \"\(entry)\" is not name=peerURL")
            }
            let name = String(parts[0])
            let url = String(parts[1])
            guard HostPort(url: url) != nil else { throw ConfigurationError("--initial-cluster: \(url) is not a valid URL") }
            // Member ids derive from peer URLs: a URL given twice would make
            // one member two voters.
            if let other = members.first(where: { $0.peerURLs.contains(url) }) {
                throw ConfigurationError("--initial-cluster: \(url) is given for both \(other.name) and \(name)")
            }
            if let i = members.firstIndex(where: { $0.name == name }) {
                members[i].peerURLs.append(url)
            } else {
                members.append((name, [url]))
            }
        }
        guard !members.isEmpty else { throw ConfigurationError("--initial-cluster is empty") }
        return members
    }

    /// etcd's UpdateDefaultClusterFromName: a member not named `default`
    /// whose `--initial-cluster` was not given founds a cluster of itself
    /// at its advertised peer URLs.
    public mutating func deriveInitialClusterFromName() {
        guard name != "default", initialCluster == MemberConfiguration().initialCluster else { return }
        initialCluster = initialAdvertisePeerURLs.map { "\(name)=\($0)" }.joined(separator: ",")
    }

    /// Checks what etcd checks at start. For a member whose data directory
    /// already names it (`initialized`), the `--initial-*` flags are not
    /// used, and not checked, as in etcd.
    public func validate(initialized: Bool = false) throws(ConfigurationError) {
        guard !name.isEmpty else { throw ConfigurationError("--name must not be empty") }
        for (flag, urls) in [
            ("--listen-client-urls", listenClientURLs), ("--advertise-client-urls", advertiseClientURLs),
            ("--listen-peer-urls", listenPeerURLs), ("--initial-advertise-peer-urls", initialAdvertisePeerURLs),
        ] {
            guard !urls.isEmpty else { throw ConfigurationError("\(flag) must not be empty") }
            // Client URLs may also be etcd's unix:// and unixs:// (host:port naming a socket file).
            let clientURLs = flag.contains("client")
            for url in urls where HostPort(url: url) == nil && !(clientURLs && ClientListenAddress(url: url) != nil) {
                throw ConfigurationError("\(flag): \(url) is not a valid URL (want http://host:port)")
            }
        }
        for url in listenMetricsURLs where ClientListenAddress(url: url) == nil {
            throw ConfigurationError("--listen-metrics-urls: \(url) is not a valid URL (want http://host:port)")
        }
        // etcd's types.NewURLs and checkBindURLs, in its words.
        for url in listenClientURLs + advertiseClientURLs + listenPeerURLs + initialAdvertisePeerURLs + listenMetricsURLs {
            if let path = URL(string: url)?.path, !path.isEmpty {
                throw ConfigurationError("URL must not contain a path: \(url)")
            }
        }
        for url in listenClientURLs + listenPeerURLs + listenMetricsURLs {
            guard let host = HostPort(url: url)?.host, host != "localhost", (try? SocketAddress(ipAddress: host, port: 0)) == nil
            else { continue }
            throw ConfigurationError("expected IP in URL for binding (\(url))")
        }
        // etcd serves one socket for both unix:// and unixs:// of a path;
        // here each URL is its own listener, so a path may be given once.
        var socketPaths: Set<String> = []
        for url in listenClientURLs + listenMetricsURLs {
            guard case .unix(let path)? = ClientListenAddress(url: url) else { continue }
            guard socketPaths.insert(path).inserted else {
                throw ConfigurationError("the unix socket \(path) is given more than once (--listen-client-urls, --listen-metrics-urls)")
            }
        }
        // Every peer listener shares one TLS setup (and the connections this
        // member opens use it too): all https:// or all http://.
        if Set(listenPeerURLs.map { $0.hasPrefix("https://") }).count > 1 {
            throw ConfigurationError("--listen-peer-urls: mixes http:// and https:// (\(listenPeerURLs.joined(separator: ",")))")
        }
        for url in listenClientURLs + listenMetricsURLs where ClientListenAddress.isSecure(url) && (certFile.isEmpty || keyFile.isEmpty) && !autoTLS {
            throw ConfigurationError("TLS key/cert (--cert-file, --key-file) must be provided for client url \(url) with HTTPS scheme")
        }
        // (On http:// URLs only, etcd ignores --client-cert-auth with a
        // warning: nothing to check there.)
        let clientTLS = (listenClientURLs + listenMetricsURLs).contains(where: ClientListenAddress.isSecure)
        if clientCertAuth && trustedCAFile.isEmpty && clientTLS {
            throw ConfigurationError("--client-cert-auth needs --trusted-ca-file")
        }
        for url in listenPeerURLs + initialAdvertisePeerURLs
        where url.hasPrefix("https://") && (peerCertFile.isEmpty || peerKeyFile.isEmpty) && !peerAutoTLS {
            throw ConfigurationError("TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url \(url) with HTTPS scheme")
        }
        if peerClientCertAuth && peerTrustedCAFile.isEmpty && (listenPeerURLs + initialAdvertisePeerURLs).contains(where: { $0.hasPrefix("https://") }) {
            throw ConfigurationError("--peer-client-cert-auth needs --peer-trusted-ca-file")
        }
        guard eventLoopThreads >= 0 else { throw ConfigurationError("--event-loop-threads must be 0 (one per core) or more") }
        _ = try tlsPolicy()
        _ = try AutoCompactionPolicy.parse(mode: autoCompactionMode, retention: autoCompactionRetention)
        _ = try grpcKeepalive()
        _ = try corruptCheckInterval()
        // etcd's checks and words (embed.Config.Validate).
        let tickMs = heartbeatInterval.nanosecondsSaturated / 1_000_000
        let electionMs = electionTimeout.nanosecondsSaturated / 1_000_000
        guard tickMs > 0 else { throw ConfigurationError("--heartbeat-interval must be >0 (set to \(tickMs)ms)") }
        guard electionMs > 0 else { throw ConfigurationError("--election-timeout must be >0 (set to \(electionMs)ms)") }
        guard electionMs >= 5 * tickMs else {
            throw ConfigurationError(
                "--election-timeout[\(electionMs)ms] should be at least as 5 times as --heartbeat-interval[\(tickMs)ms]")
        }
        guard electionMs <= 50_000 else {
            throw ConfigurationError("--election-timeout[\(electionMs)ms] is too long, and should be set less than 50000ms")
        }
        // etcd's VerifyBootstrap / VerifyJoinExisting, in its words: the
        // member is in --initial-cluster (joining too: etcdctl member add
        // prints the --initial-cluster to start it with), under its own URLs.
        if !initialized {
            let founding = try parsedInitialCluster()
            guard let mine = founding.first(where: { $0.name == name }) else {
                throw ConfigurationError("couldn't find local name \"\(name)\" in the initial cluster configuration")
            }
            if initialClusterState == .new {
                let advertised = Set(initialAdvertisePeerURLs)
                let missing = mine.peerURLs.filter { !advertised.contains($0) }
                guard missing.isEmpty else {
                    throw ConfigurationError(
                        "--initial-cluster has \(missing.map { "\(name)=\($0)" }.joined(separator: ",")) but missing from "
                            + "--initial-advertise-peer-urls=\(initialAdvertisePeerURLs.sorted().joined(separator: ","))")
                }
                let extra = initialAdvertisePeerURLs.filter { !mine.peerURLs.contains($0) }
                guard extra.isEmpty else {
                    throw ConfigurationError(
                        "--initial-advertise-peer-urls has \(extra.joined(separator: ",")) but missing from "
                            + "--initial-cluster=\(name)=\(initialAdvertisePeerURLs.joined(separator: ","))")
                }
            }
        }
    }

    /// Election timeout in ticks.
    public var electionTicks: Int {
        max(Int(electionTimeout.nanosecondsSaturated / max(heartbeatInterval.nanosecondsSaturated, 1)), 5)
    }
}

/// A configuration that cannot work, with a message naming the flag.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// `scheme://host:port`, split for binding and connecting.
public struct HostPort: Sendable, Hashable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses an http(s) URL; nil if it has no host or port.
    public init?(url: String) {
        guard let parsed = URL(string: url), let scheme = parsed.scheme, scheme == "http" || scheme == "https",
            let host = parsed.host, !host.isEmpty, let port = parsed.port, (0...65535).contains(port)
        else { return nil }
        // Brackets of IPv6 literals are not part of the address to bind.
        self.host = host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host
        self.port = port
    }
}

/// A client URL's place to listen: TCP `host:port`, or etcd's `unix://` and
/// `unixs://` (TLS) URLs, whose `host:port` names a socket file, relative to
/// the working directory as in etcd (`unix://localhost:2379` is the file
/// `localhost:2379`).
public enum ClientListenAddress: Sendable, Hashable {
    case tcp(HostPort)
    case unix(path: String)

    public init?(url: String) {
        if let hostPort = HostPort(url: url) {
            self = .tcp(hostPort)
            return
        }
        for scheme in ["unix://", "unixs://"] where url.hasPrefix(scheme) {
            let address = String(url.dropFirst(scheme.count))
            // etcd's NewURLs: host:port, no path.
            guard let colon = address.lastIndex(of: ":"), colon != address.startIndex,
                Int(address[address.index(after: colon)...]) != nil, !address.contains("/")
            else { return nil }
            self = .unix(path: address)
            return
        }
        return nil
    }

    /// Whether a URL's scheme asks for TLS (`https://`, `unixs://`).
    public static func isSecure(_ url: String) -> Bool { url.hasPrefix("https://") || url.hasPrefix("unixs://") }
}
