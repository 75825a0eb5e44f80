import Foundation
import Logging
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
    var logger: Logger?

    /// How long a scrape waits for the apply thread's levels.
    static let storeReadLimit: Duration = .seconds(1)

    func install(on router: inout GRPCRouter) {
        let endpoints = self
        router.http["/metrics"] = { _ in await endpoints.metricsPage() }
        router.http["/health"] = { await endpoints.health($0) }
        // /metrics is promhttp's handler, which answers any method.
        router.http["/version"] = { $0.method == "GET" ? endpoints.version() : .methodNotAllowed(allow: "GET") }
    }

    func metricsPage() async -> HTTPResponse {
        // Live keys, as etcd's etcd_debugging_mvcc_keys_total (not deleted ones awaiting compaction).
        let (node, metrics) = (self.node, self.metrics)
        let read: @Sendable () async -> StoreLevels? = {
            await node.withMachine { replica in
                metrics.advance(to: replica.machine.store.operations)
                return StoreLevels(
                    liveKeys: replica.machine.store.liveKeys, watchers: replica.watches.count,
                    revision: replica.machine.store.revision, compactRevision: replica.machine.store.compactedRevision)
            }
        }
        // Read on the apply thread, but not waited for past a second: a
        // long apply or a stalled disk must not make the scrape time out
        // (and the member vanish from monitoring) just when it matters;
        // the last levels read stand in.
        let fresh: StoreLevels? = await withinLimit(Self.storeReadLimit) { answer in Task { answer(await read()) } }
        var levels = fresh ?? metrics.lastLevels.withLock { $0 }
        if let fresh { metrics.lastLevels.withLock { $0 = fresh } }
        levels.bytes = space.usedBytes
        let body = metrics.scrape(status: node.status, store: levels, quotaBytes: space.limit)
        return HTTPResponse(contentType: "text/plain; version=0.0.4", body: body)
    }

    /// etcd 3.4's `/health`: healthy when no alarm is raised but those the
    /// query's `exclude` names (`?exclude=NOSPACE`), the member knows a
    /// leader, and a linearizable read succeeds within a second (etcd's
    /// QGET). Answered as etcd's: `{"health":"true"}` (200) or
    /// `{"health":"false"}` and a newline (503), as text/plain; a method
    /// other than GET gets 405. Why it is unhealthy goes to the log, as
    /// etcd's warnings do.
    func health(_ request: HTTPRequest) async -> HTTPResponse {
        let text = "text/plain; charset=utf-8"
        guard request.method == "GET" else { return .methodNotAllowed(allow: "GET") }
        let metrics = self.metrics
        let logger = self.logger
        func answer(_ healthy: Bool, _ reason: String = "") -> HTTPResponse {
            metrics.healthChecked(healthy)
            if healthy { return HTTPResponse(status: 200, contentType: text, body: Array(#"{"health":"true"}"#.utf8)) }
            logger?.warning("/health error", metadata: ["reason": "\(reason)"])
            return HTTPResponse(status: 503, contentType: text, body: Array("{\"health\":\"false\"}\n".utf8))
        }
        let excluded = Set(request.values("exclude"))
        let status = node.status
        guard status.running else { return answer(false, "STOPPED") }
        if let alarm = summary.alarms.first(where: { !excluded.contains($0.kind.name) }) {
            return answer(false, "ALARM \(alarm.kind.name)")
        }
        guard status.leader != .none else { return answer(false, "RAFT NO LEADER") }
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
