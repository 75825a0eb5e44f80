import Foundation
import Yams

extension MemberConfiguration {
    /// Reads etcd's configuration file format (`--config-file`): YAML with the
    /// flag names as keys (`name`, `data-dir`, `listen-client-urls`, …; URL
    /// lists comma-separated, durations in milliseconds). A key left empty
    /// (null, as etcd's sample file leaves many) keeps its default.
    ///
    /// Unknown keys are refused by name, so a typo does not pass silently.
    /// etcd 3.4 keys Ensemble does not implement are taken when they change
    /// nothing Ensemble does (`enable-pprof`, `max-wals`, `debug`, …: see
    /// ``ignoredEtcdKeys``) and reported in `warnings`; refused when
    /// ignoring them would surprise (a separate WAL directory, discovery, a
    /// proxy, certificate restrictions, `force-new-cluster`) unless they hold
    /// etcd's default.
    public init(yaml text: String) throws {
        self = try Self.load(yaml: text).configuration
    }

    /// ``init(yaml:)``, with a line for every etcd key taken without effect
    /// (`ensemble serve` logs them).
    public static func load(yaml text: String) throws -> (configuration: MemberConfiguration, warnings: [String]) {
        var configuration = MemberConfiguration()
        var warnings: [String] = []
        guard let loaded = try Yams.load(yaml: text) else { return (configuration, warnings) }
        guard let entries = loaded as? [String: Any] else {
            throw ConfigurationError("config file: expected a mapping of flag names to values")
        }
        for (key, value) in entries.sorted(by: { $0.key < $1.key }) where !(value is NSNull) {
            switch try etcdKey(key, value) {
            case .apply: try configuration.apply(key: key, value: value)
            case .skip: break
            case let .ignore(warning): warnings.append(warning)
            }
        }
        return (configuration, warnings)
    }

    /// etcd 3.4 keys that change nothing Ensemble does: taken with a warning.
    public static let ignoredEtcdKeys: Set<String> = [
        "max-snapshots", "max-wals", "cors", "backend-batch-limit", "backend-batch-interval", "max-txn-ops",
        "strict-reconfig-check", "enable-v2", "enable-pprof", "metrics", "debug", "log-package-levels",
        "auth-token", "bcrypt-cost", "experimental-backend-bbolt-freelist-type", "experimental-compaction-batch-limit", "experimental-enable-v2v3",
        "experimental-enable-lease-checkpoint", "discovery-fallback", "proxy-failure-wait", "proxy-refresh-interval",
        "proxy-dial-timeout", "proxy-write-timeout", "proxy-read-timeout", "initial-election-tick-advance",
        "pre-vote", "enable-grpc-gateway", "unsafe-no-fsync",
    ]

    /// etcd 3.4 keys Ensemble refuses unless they hold etcd's default (the
    /// values listed): ignoring a set one would surprise.
    public static let defaultOnlyEtcdKeys: [String: Set<String>] = [
        "wal-dir": [""], "discovery": [""], "discovery-srv": [""], "discovery-srv-name": [""],
        "discovery-proxy": [""], "proxy": ["off", "false"], "force-new-cluster": ["false"],
        "client-crl-file": [""], "client-cert-allowed-hostname": [""], "peer-crl-file": [""],
        "peer-cert-allowed-cn": [""], "peer-cert-allowed-hostname": [""],
    ]

    enum EtcdKey: Equatable {
        /// A key Ensemble implements (or an unknown one, refused by ``apply(key:value:)``).
        case apply
        /// An etcd key left at etcd's default: nothing to do.
        case skip
        /// An etcd key with no effect here: taken, with this warning.
        case ignore(String)
    }

    /// What to do with `key`; throws for an etcd key set to something
    /// Ensemble cannot do.
    static func etcdKey(_ key: String, _ value: Any) throws -> EtcdKey {
        if let defaults = defaultOnlyEtcdKeys[key] {
            let text = (value as? Bool).map { $0 ? "true" : "false" } ?? (value as? String) ?? "\(value)"
            guard defaults.contains(text) else {
                throw ConfigurationError("config file: \(key): \(text) is not supported by Ensemble (only etcd's default)")
            }
            return .skip
        }
        guard ignoredEtcdKeys.contains(key) else { return .apply }
        return .ignore("config file: \(key) is an etcd setting with no effect in Ensemble; ignored")
    }

    private mutating func apply(key: String, value: Any) throws {
        func string() throws -> String {
            if let text = value as? String { return text }
            if let number = value as? Int { return String(number) }
            throw ConfigurationError("config file: \(key) must be a string")
        }
        func urls() throws -> [String] {
            if let list = value as? [String] { return list }
            return try string().split(separator: ",").map { String($0.trimmingCharacters(in: .whitespaces)) }
        }
        /// etcd's config file holds a `time.Duration` as integer nanoseconds
        /// (its YAML goes through JSON); a Go duration string is taken too.
        func duration() throws -> String {
            if let number = value as? Int { return "\(number)ns" }
            return try string()
        }
        func boolean() throws -> Bool {
            guard let on = value as? Bool else { throw ConfigurationError("config file: \(key) must be true or false") }
            return on
        }
        func integer() throws -> Int {
            if let number = value as? Int { return number }
            if let text = value as? String, let number = Int(text) { return number }
            throw ConfigurationError("config file: \(key) must be an integer")
        }
        switch key {
        case "name": name = try string()
        case "data-dir": dataDirectory = try string()
        case "listen-client-urls": listenClientURLs = try urls()
        case "listen-metrics-urls": listenMetricsURLs = try urls()
        case "advertise-client-urls": advertiseClientURLs = try urls()
        case "listen-peer-urls": listenPeerURLs = try urls()
        case "initial-advertise-peer-urls": initialAdvertisePeerURLs = try urls()
        case "initial-cluster": initialCluster = try string()
        case "initial-cluster-state":
            guard let state = ClusterState(rawValue: try string()) else {
                throw ConfigurationError("config file: initial-cluster-state must be new or existing")
            }
            initialClusterState = state
        case "initial-cluster-token": initialClusterToken = try string()
        case "heartbeat-interval": heartbeatInterval = .milliseconds(try integer())
        case "election-timeout": electionTimeout = .milliseconds(try integer())
        case "snapshot-count": snapshotCount = try integer() <= 0 ? 100_000 : UInt64(try integer())  // etcd: 0 is its default
        case "quota-backend-bytes": quotaBackendBytes = try integer()
        case "max-request-bytes": maxRequestBytes = try integer()
        case "auto-compaction-mode": autoCompactionMode = try string()
        case "auto-compaction-retention": autoCompactionRetention = try string()
        case "grpc-keepalive-interval": grpcKeepaliveInterval = try duration()
        case "grpc-keepalive-timeout": grpcKeepaliveTimeout = try duration()
        case "grpc-keepalive-min-time": grpcKeepaliveMinTime = try duration()
        case "experimental-lease-checkpoint-interval": leaseCheckpointInterval = try duration()
        case "experimental-corrupt-check-time": corruptCheckTime = try duration()
        case "experimental-initial-corrupt-check": initialCorruptCheck = try boolean()
        // A flag only in etcd 3.4: its config file ignores the key, so `true`
        // there still checks. Refused rather than differ either way.
        case "experimental-peer-skip-client-san-verification":
            if try boolean() {
                throw ConfigurationError(
                    "config file: experimental-peer-skip-client-san-verification: etcd 3.4 ignores this key in a config file "
                        + "(it still checks); without a config file, give --experimental-peer-skip-client-san-verification")
            }
        case "cipher-suites": cipherSuites = try urls()  // a list, or comma-separated
        case "event-loop-threads": eventLoopThreads = try integer()
        case "log-level": logLevel = try string()
        case "logger": logger = try string()
        case "log-outputs": logOutputs = try urls()  // a list, or comma-separated
        case "tls-min-version": tlsMinVersion = try string()
        case "tls-max-version": tlsMaxVersion = try string()
        case "client-transport-security", "peer-transport-security":
            // etcd's nesting of the TLS flags.
            guard let section = value as? [String: Any] else {
                throw ConfigurationError("config file: \(key) must be a mapping")
            }
            let peer = key == "peer-transport-security"
            // etcd's sample file leaves unused entries empty (null).
            for (name, inner) in section where !(inner is NSNull) {
                switch name {
                case "cert-file", "key-file", "trusted-ca-file":
                    guard let path = inner as? String else { throw ConfigurationError("config file: \(key).\(name) must be a string") }
                    switch (name, peer) {
                    case ("cert-file", false): certFile = path
                    case ("key-file", false): keyFile = path
                    case (_, false): trustedCAFile = path
                    case ("cert-file", true): peerCertFile = path
                    case ("key-file", true): peerKeyFile = path
                    default: peerTrustedCAFile = path
                    }
                case "client-cert-auth":
                    guard let on = inner as? Bool else { throw ConfigurationError("config file: \(key).client-cert-auth must be true or false") }
                    if peer { peerClientCertAuth = on } else { clientCertAuth = on }
                case "auto-tls":
                    guard let on = inner as? Bool else { throw ConfigurationError("config file: \(key).auto-tls must be true or false") }
                    if peer { peerAutoTLS = on } else { autoTLS = on }
                default:
                    throw ConfigurationError("config file: unknown or unsupported key \(key).\(name)")
                }
            }
        default:
            throw ConfigurationError("config file: unknown or unsupported key \(key)")
        }
    }
}
