import Foundation
import Yams

extension MemberConfiguration {
    /// Reads etcd's configuration file format (`--config-file`): YAML with the
    /// flag names as keys (`name`, `data-dir`, `listen-client-urls`, …; URL
    /// lists comma-separated, durations in milliseconds). Unknown keys are
    /// refused by name, so a typo does not pass silently; etcd keys Ensemble does
    /// not implement are refused the same way.
    public init(yaml text: String) throws {
        self.init()
        guard let loaded = try Yams.load(yaml: text) else { return }
        guard let entries = loaded as? [String: Any] else {
            throw ConfigurationError("config file: expected a mapping of flag names to values")
        }
        for (key, value) in entries {
            try apply(key: key, value: value)
        }
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
        case "snapshot-count": snapshotCount = UInt64(max(try integer(), 1))
        case "quota-backend-bytes": quotaBackendBytes = try integer()
        case "max-request-bytes": maxRequestBytes = try integer()
        case "auto-compaction-mode": autoCompactionMode = try string()
        case "auto-compaction-retention": autoCompactionRetention = try string()
        case "grpc-keepalive-interval": grpcKeepaliveInterval = try duration()
        case "grpc-keepalive-timeout": grpcKeepaliveTimeout = try duration()
        case "grpc-keepalive-min-time": grpcKeepaliveMinTime = try duration()
        case "experimental-lease-checkpoint-interval": leaseCheckpointInterval = try duration()
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
