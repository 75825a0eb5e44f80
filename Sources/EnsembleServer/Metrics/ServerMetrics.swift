import EnsembleClient
import KV
import Prometheus
import Raft
import Synchronization

/// A member's Prometheus metrics, named as etcd names them where etcd has
/// the metric (dashboards and alerts written for etcd keep working), served
/// at `/metrics` on the client port.
///
/// Events (WAL syncs, applies, leader changes, failed proposals, gRPC calls)
/// are recorded as they happen through ``NodeObserver`` and
/// ``GRPCCallObserver``; levels (term, indexes, sizes, watchers) are read from
/// the member when scraped.
public final class ServerMetrics: NodeObserver, GRPCCallObserver {
    public let registry = PrometheusCollectorRegistry()

    // Levels, set at scrape time.
    let hasLeader: Gauge
    let isLeader: Gauge
    let term: Gauge
    let committed: Gauge
    let applied: Gauge
    let pending: Gauge
    let applyLag: Gauge
    let dbSize: Gauge
    let keys: Gauge
    let watchers: Gauge
    let isLearner: Gauge
    let quota: Gauge
    let dbInUse: Gauge
    let revision: Gauge
    let compactRevision: Gauge
    // Events.
    let leaderChanges: Counter
    let proposalsFailed: Counter
    let heartbeatSendFailures: Counter
    let walFsync: DurationHistogram
    let walBytes: Counter
    let applyDuration: DurationHistogram
    let slowApplies: Counter
    let snapshotSave: DurationHistogram
    let healthSuccesses: Counter
    let healthFailures: Counter
    /// `etcd_network_client_grpc_{received,sent}_bytes_total`: gRPC message bytes.
    let clientReceivedBytes: Counter
    let clientSentBytes: Counter
    /// `etcd_mvcc_{range,put,delete,txn}_total`, advanced at scrape time by
    /// what the store counted since the last scrape.
    let operations: (range: Counter, put: Counter, delete: Counter, txn: Counter)
    private let operationsSeen = Mutex(MVCCStore.OperationCounts())
    /// The store's levels at the last scrape that could read them.
    let lastLevels = Mutex(StoreLevels())
    /// This member's id (labels of the peer series).
    let member: NodeID
    private let peers = Mutex<[NodeID: PeerMetrics]>([:])
    /// By path, prefixed `stream ` for streaming methods.
    private let grpc = Mutex<[String: GRPCMethodMetrics]>([:])
    private let clientUnaries: ClientRequestCounters
    private let clientStreams: ClientRequestCounters
    /// `process_*`, as etcd exports them.
    let process: ProcessMetrics

    /// etcd's disk histogram buckets: 1 ms to about 8 s, doubling.
    static let diskBuckets: [Duration] = (0..<14).map { .microseconds(1000 << $0) }

    public init(member: NodeID = .none) {
        self.member = member
        let describe = Self.describe
        hasLeader = registry.makeGauge(descriptor: describe("etcd_server_has_leader", "Whether a leader exists: 1 yes, 0 no."))
        isLeader = registry.makeGauge(descriptor: describe("etcd_server_is_leader", "Whether this member is the leader."))
        isLearner = registry.makeGauge(descriptor: describe("etcd_server_is_learner", "Whether this member is a learner."))
        term = registry.makeGauge(descriptor: describe("ensemble_server_raft_term", "The current Raft term."))
        committed = registry.makeGauge(descriptor: describe("etcd_server_proposals_committed_total", "The committed Raft index."))
        applied = registry.makeGauge(descriptor: describe("etcd_server_proposals_applied_total", "The applied Raft index."))
        pending = registry.makeGauge(descriptor: describe("etcd_server_proposals_pending", "Proposals waiting to commit."))
        applyLag = registry.makeGauge(descriptor: describe("ensemble_server_apply_lag", "Committed but not yet applied entries."))
        dbSize = registry.makeGauge(descriptor: describe("etcd_mvcc_db_total_size_in_bytes", "Size of the retained key history."))
        keys = registry.makeGauge(descriptor: describe("etcd_debugging_mvcc_keys_total", "Live keys (deleted ones not counted)."))
        watchers = registry.makeGauge(descriptor: describe("etcd_debugging_mvcc_watcher_total", "Watchers on this member."))
        quota = registry.makeGauge(
            descriptor: describe("etcd_server_quota_backend_bytes", "The space quota in bytes (0: none)."))
        dbInUse = registry.makeGauge(
            descriptor: describe("etcd_mvcc_db_total_size_in_use_in_bytes", "Bytes the retained key history uses (no free pages here)."))
        revision = registry.makeGauge(descriptor: describe("etcd_debugging_mvcc_current_revision", "The store's current revision."))
        compactRevision = registry.makeGauge(
            descriptor: describe("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction (-1: none, as etcd)."))
        // Facts carried by a label, the value always 1 (etcd's way).
        for (name, help, label) in [
            ("etcd_server_version", "Which etcd version the server speaks (label server_version).", ("server_version", "3.4.0")),
            ("etcd_cluster_version", "Which cluster version the cluster runs (label cluster_version).", ("cluster_version", "3.4")),
            ("etcd_server_id", "This member's id in hex (label server_id).", ("server_id", hex(member))),
        ] {
            registry.makeGauge(descriptor: describe(name, help), labels: [label]).set(to: 1)
        }
        leaderChanges = registry.makeCounter(descriptor: describe("etcd_server_leader_changes_seen_total", "Leader changes seen."))
        proposalsFailed = registry.makeCounter(descriptor: describe("etcd_server_proposals_failed_total", "Failed proposals."))
        heartbeatSendFailures = registry.makeCounter(
            descriptor: describe(
                "etcd_server_heartbeat_send_failures_total", "Heartbeats this leader sent later than two heartbeat intervals after the previous."))
        walFsync = registry.makeDurationHistogram(
            descriptor: describe("etcd_disk_wal_fsync_duration_seconds", "WAL write and fdatasync latency."), buckets: Self.diskBuckets)
        walBytes = registry.makeCounter(descriptor: describe("etcd_disk_wal_write_bytes_total", "Bytes written to the WAL."))
        applyDuration = registry.makeDurationHistogram(
            descriptor: describe("ensemble_server_apply_duration_seconds", "Time to apply one batch of committed entries."),
            buckets: Self.diskBuckets)
        slowApplies = registry.makeCounter(
            descriptor: describe("etcd_server_slow_apply_total", "Apply batches that took longer than 100 ms."))
        snapshotSave = registry.makeDurationHistogram(
            descriptor: describe("etcd_debugging_snap_save_total_duration_seconds", "Time to write and install a Raft snapshot."),
            buckets: Self.diskBuckets)
        healthSuccesses = registry.makeCounter(descriptor: describe("etcd_server_health_success", "/health checks that passed."))
        healthFailures = registry.makeCounter(descriptor: describe("etcd_server_health_failures", "/health checks that failed."))
        clientReceivedBytes = registry.makeCounter(
            descriptor: describe("etcd_network_client_grpc_received_bytes_total", "gRPC request message bytes received from clients."))
        clientSentBytes = registry.makeCounter(
            descriptor: describe("etcd_network_client_grpc_sent_bytes_total", "gRPC response message bytes sent to clients."))
        operations = (
            registry.makeCounter(descriptor: describe("etcd_mvcc_range_total", "Range operations served (Range calls and txn ranges).")),
            registry.makeCounter(descriptor: describe("etcd_mvcc_put_total", "Put operations applied (txn puts included).")),
            registry.makeCounter(descriptor: describe("etcd_mvcc_delete_total", "DeleteRange operations applied (txn deletes included).")),
            registry.makeCounter(descriptor: describe("etcd_mvcc_txn_total", "Transactions of more than one operation."))
        )
        process = ProcessMetrics(registry: registry)
        clientUnaries = ClientRequestCounters(registry: registry, type: "unary")
        clientStreams = ClientRequestCounters(registry: registry, type: "stream")
    }

    /// A metric's name and help text (no unit suffix: etcd's names carry it).
    static func describe(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    // MARK: NodeObserver

    public func walSynced(duration: Duration) { walFsync.record(duration) }
    public func walWritten(bytes: Int) { walBytes.increment(by: Int64(bytes)) }
    public func applied(entries: Int, duration: Duration) {
        applyDuration.record(duration)
        if duration > .milliseconds(100) { slowApplies.increment() }
    }
    public func snapshotSaved(index: UInt64, bytes: Int, duration: Duration) { snapshotSave.record(duration) }
    public func peerRoundTrip(to peer: NodeID, duration: Duration) { metrics(for: peer).roundTrip.record(duration) }
    /// etcd counts a change only when a (new) leader is known: a failover is
    /// one change, not two (to none, then to the new one).
    public func leaderChanged(to leader: NodeID) { if leader != .none { leaderChanges.increment() } }
    public func proposalFailed() { proposalsFailed.increment() }
    public func heartbeatLate(to peer: NodeID, by: Duration, deadline: Duration) { heartbeatSendFailures.increment() }

    // MARK: GRPCCallObserver

    /// `grpc_server_handled_total` and `grpc_server_handling_seconds` for
    /// one method, made once per path and type.
    public func method(path: String, streaming: Bool) -> any GRPCMethodObserver {
        grpc.withLock { table in
            let key = streaming ? "stream " + path : path
            if let method = table[key] { return method }
            let method = GRPCMethodMetrics(
                registry: registry, path: path, streaming: streaming, bytesReceived: clientReceivedBytes, bytesSent: clientSentBytes,
                clientRequests: path.hasPrefix("/ensemble.") ? nil : streaming ? clientStreams : clientUnaries)
            table[key] = method
            return method
        }
    }

    /// One peer's series, made the first time the peer is seen.
    func metrics(for peer: NodeID) -> PeerMetrics {
        peers.withLock { table in
            if let metrics = table[peer] { return metrics }
            let metrics = PeerMetrics(registry: registry, local: member, peer: peer)
            table[peer] = metrics
            return metrics
        }
    }

    /// A `/health` check's outcome.
    func healthChecked(_ healthy: Bool) { (healthy ? healthSuccesses : healthFailures).increment() }

    /// Advances the operation counters by what the store counted since the
    /// last scrape (all of it if the store was replaced, by a snapshot).
    /// Called on the apply thread, which reads the counts: two scrapes at
    /// once each advanced from their own read, and an older read after a
    /// newer one looked like a replaced store and counted everything again
    /// (review finding).
    func advance(to counts: MVCCStore.OperationCounts) {
        let delta = operationsSeen.withLock { seen -> MVCCStore.OperationCounts in
            defer { seen = counts }
            return counts.since(seen)
        }
        operations.range.increment(by: Int64(delta.ranges))
        operations.put.increment(by: Int64(delta.puts))
        operations.delete.increment(by: Int64(delta.deletes))
        operations.txn.increment(by: Int64(delta.txns))
    }

    /// Sets the levels from the member's state and returns the exposition text.
    func scrape(status: NodeStatus, store: StoreLevels, quotaBytes: Int) -> [UInt8] {
        hasLeader.set(to: status.leader == .none ? 0.0 : 1.0)
        isLeader.set(to: status.role == .leader ? 1.0 : 0.0)
        isLearner.set(to: status.learners.contains(status.id) ? 1.0 : 0.0)
        term.set(to: Double(status.term))
        committed.set(to: Double(status.commitIndex))
        applied.set(to: Double(status.appliedIndex))
        pending.set(to: Double(status.pendingProposals))
        applyLag.set(to: Double(status.commitIndex &- min(status.appliedIndex, status.commitIndex)))
        dbSize.set(to: Double(store.bytes))
        dbInUse.set(to: Double(store.bytes))
        quota.set(to: Double(quotaBytes))
        keys.set(to: Double(store.liveKeys))
        watchers.set(to: Double(store.watchers))
        revision.set(to: Double(store.revision))
        compactRevision.set(to: Double(store.compactRevision))
        process.update()
        return registry.emitToBuffer()
    }
}

/// The store's levels that `/metrics` reports, read on the applier.
struct StoreLevels: Sendable {
    var bytes = 0
    var liveKeys = 0
    var watchers = 0
    var revision: Int64 = 0
    var compactRevision: Int64 = 0
}
