import Foundation
import KV
import Raft
import Synchronization

/// A member's plain HTTP endpoints, as etcd serves them on its client port:
/// `/metrics` (Prometheus text format), `/health` and `/version`.
struct MemberEndpoints: Sendable {
    let node: NodeLoop<KVReplica>
    let metrics: ServerMetrics
    let space: SpaceQuota
    let summary: AppliedSummary

    func install(on router: inout GRPCRouter) {
        let endpoints = self
        router.http["/metrics"] = { await endpoints.metricsPage() }
        router.http["/health"] = { await endpoints.health() }
        router.http["/version"] = { endpoints.version() }
    }

    func metricsPage() async -> HTTPResponse {
        // Live keys, as etcd's etcd_debugging_mvcc_keys_total (not deleted ones awaiting compaction).
        var levels = await node.withMachine { replica in
            StoreLevels(
                liveKeys: replica.machine.store.liveKeys, watchers: replica.watches.count,
                revision: replica.machine.store.revision, compactRevision: replica.machine.store.compactedRevision,
                operations: replica.machine.store.operations)
        } ?? StoreLevels()
        levels.bytes = space.usedBytes
        let body = metrics.scrape(status: node.status, store: levels, quotaBytes: space.limit)
        return HTTPResponse(contentType: "text/plain; version=0.0.4", body: body)
    }

    /// etcd's `/health`: healthy when the member knows a leader, no alarm is
    /// raised (NOSPACE or CORRUPT), and a linearizable read succeeds within
    /// a second (etcd's QGET).
    func health() async -> HTTPResponse {
        let metrics = self.metrics
        func answer(_ healthy: Bool, _ reason: String = "") -> HTTPResponse {
            metrics.healthChecked(healthy)
            let body = healthy ? #"{"health":"true"}"# : #"{"health":"false","reason":"\#(reason)"}"#
            return HTTPResponse(status: healthy ? 200 : 503, body: Array(body.utf8))
        }
        let status = node.status
        guard status.running else { return answer(false, "STOPPED") }
        guard status.leader != .none else { return answer(false, "RAFT NO LEADER") }
        if let alarm = summary.alarms.first { return answer(false, "ALARM \(alarm.kind.name)") }
        // The read cannot be withdrawn; whichever comes first answers.
        let node = self.node
        let healthy: Bool = await withCheckedContinuation { continuation in
            let once = Mutex(Optional(continuation))
            let answer: @Sendable (Bool) -> Void = { value in once.withLock { $0.take() }?.resume(returning: value) }
            Task {
                let ok = (try? await node.read(RangeRequest(key: Array("health".utf8))).get()) != nil
                answer(ok)
            }
            Task {
                try? await Task.sleep(for: .seconds(1))
                answer(false)
            }
        }
        return answer(healthy, "QGET ERROR")
    }

    func version() -> HTTPResponse {
        HTTPResponse(body: Array(#"{"etcdserver":"3.4.0","etcdcluster":"3.4.0","ensemble":"\#(MaintenanceService.version)"}"#.utf8))
    }
}
