import EnsembleClient
import Prometheus
import Synchronization

/// One gRPC method's `grpc_server_started_total`, `grpc_server_handled_total`
/// (a counter per status code, all 17 made up front as go-grpc-prometheus
/// makes them, so `rate()` sees a code's first occurrence) and
/// `grpc_server_handling_seconds`,
/// labelled as go-grpc-prometheus labels them (etcd's gRPC metrics).
final class GRPCMethodMetrics: GRPCMethodObserver {
    private let registry: PrometheusCollectorRegistry
    private let labels: [(String, String)]
    private let latency: DurationHistogram
    private let startedCount: Counter
    private let handled = Mutex<[Int: Counter]>([:])
    private let messagesReceived: Counter
    private let messagesSent: Counter
    /// The member's totals over all methods.
    private let bytesReceived: Counter
    private let bytesSent: Counter
    /// `etcd_server_client_requests_total` for this method's type; nil for
    /// Ensemble's own methods (member to member).
    private let clientRequests: ClientRequestCounters?

    /// gRPC latency buckets, 100 µs to about 26 s.
    static let buckets: [Duration] = (0..<19).map { .microseconds(100 << $0) }

    /// grpc-go's label for the method's kind: etcd's streams are
    /// bidirectional except Snapshot, which only the server streams.
    static func type(path: String, streaming: Bool) -> String {
        guard streaming else { return "unary" }
        return path.hasSuffix("/Maintenance/Snapshot") ? "server_stream" : "bidi_stream"
    }

    init(
        registry: PrometheusCollectorRegistry, path: String, streaming: Bool, bytesReceived: Counter, bytesSent: Counter,
        clientRequests: ClientRequestCounters?
    ) {
        let parts = path.split(separator: "/")
        labels = [
            ("grpc_service", parts.first.map(String.init) ?? "unknown"),
            ("grpc_method", parts.dropFirst().first.map(String.init) ?? "unknown"),
            ("grpc_type", Self.type(path: path, streaming: streaming)),
        ]
        self.registry = registry
        latency = registry.makeDurationHistogram(
            descriptor: ServerMetrics.describe("grpc_server_handling_seconds", "Latency of gRPC calls handled by the server."),
            labels: labels, buckets: Self.buckets)
        startedCount = registry.makeCounter(
            descriptor: ServerMetrics.describe("grpc_server_started_total", "gRPC calls started on the server."), labels: labels)
        messagesReceived = registry.makeCounter(
            descriptor: ServerMetrics.describe("grpc_server_msg_received_total", "gRPC request messages received."), labels: labels)
        messagesSent = registry.makeCounter(
            descriptor: ServerMetrics.describe("grpc_server_msg_sent_total", "gRPC response messages sent."), labels: labels)
        self.bytesReceived = bytesReceived
        self.bytesSent = bytesSent
        self.clientRequests = clientRequests
        for code in 0...16 { _ = counter(code: code) }
    }

    func received(bytes: Int) {
        messagesReceived.increment()
        bytesReceived.increment(by: Int64(bytes))
    }

    func sent(bytes: Int) {
        messagesSent.increment()
        bytesSent.increment(by: Int64(bytes))
    }

    func started(clientAPIVersion: String?) {
        startedCount.increment()
        clientRequests?.count(clientAPIVersion ?? "unknown")
    }

    func handled(code: Int, duration: Duration) {
        counter(code: code).increment()
        latency.record(duration)
    }

    private func counter(code: Int) -> Counter {
        handled.withLock { counters in
            if let counter = counters[code] { return counter }
            let counter = registry.makeCounter(
                descriptor: ServerMetrics.describe("grpc_server_handled_total", "gRPC calls completed, by status code."),
                labels: labels + [("grpc_code", GRPCCallError.name(of: code))])
            counters[code] = counter
            return counter
        }
    }
}

/// etcd's `etcd_server_client_requests_total{type, client_api_version}`: calls
/// by kind (`unary`, `stream`) and by the client library's API version
/// (`client-api-version` header; `unknown` without one). A client chooses
/// the label, so past `maxVersions` distinct ones (or one over 32 bytes) the
/// rest count as `other` rather than making a series each.
final class ClientRequestCounters: Sendable {
    static let maxVersions = 16
    private let registry: PrometheusCollectorRegistry
    private let type: String
    /// etcdctl's and clientv3's version, counted without the lock.
    private let current: Counter
    private let byVersion = Mutex<[String: Counter]>([:])

    init(registry: PrometheusCollectorRegistry, type: String) {
        self.registry = registry
        self.type = type
        current = Self.make(registry, type: type, version: "3.4")
        byVersion.withLock { $0["3.4"] = current }
    }

    func count(_ version: String) {
        if version == "3.4" { return current.increment() }
        byVersion.withLock { counters in
            if let counter = counters[version] { return counter.increment() }
            let label = counters.count < Self.maxVersions && version.utf8.count <= 32 ? version : "other"
            if let counter = counters[label] { return counter.increment() }
            let counter = Self.make(registry, type: type, version: label)
            counters[label] = counter
            counter.increment()
        }
    }

    private static func make(_ registry: PrometheusCollectorRegistry, type: String, version: String) -> Counter {
        registry.makeCounter(
            descriptor: ServerMetrics.describe("etcd_server_client_requests_total", "Client requests, by kind and client API version."),
            labels: [("type", type), ("client_api_version", version)])
    }
}
