import Logging
import Raft

/// Logs what an operator wants to see (leader changes) and passes every event
/// on to the metrics.
struct LoggingNodeObserver: NodeObserver {
    let next: ServerMetrics
    let logger: Logger

    func walSynced(duration: Duration) {
        next.walSynced(duration: duration)
        if duration > .seconds(1) {
            logger.warning("slow WAL fsync", metadata: ["took": "\(duration)"])
        }
    }

    func applied(entries: Int, duration: Duration) { next.applied(entries: entries, duration: duration) }

    func leaderChanged(to leader: NodeID) {
        next.leaderChanged(to: leader)
        if leader == .none {
            logger.warning("lost the leader")
        } else {
            logger.info("leader changed", metadata: ["leader": "\(String(leader, radix: 16))"])
        }
    }

    func proposalFailed() { next.proposalFailed() }
}
