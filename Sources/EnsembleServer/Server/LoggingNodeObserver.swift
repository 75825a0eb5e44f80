import Logging
import Raft

/// Logs what an operator wants to see (leader changes) and passes every event
/// on to the metrics.
struct LoggingNodeObserver: NodeObserver {
    let next: ServerMetrics
    let logger: Logger

    func walSynced(duration: Duration) {
        next.walSynced(duration: duration)
        if duration > .milliseconds(100) {
            logger.warning("slow WAL fsync", metadata: ["took": "\(duration)"])
        }
    }

    func applied(entries: Int, duration: Duration) {
        next.applied(entries: entries, duration: duration)
        // etcd warns past 100 ms: clients and watchers wait that long.
        if duration > .milliseconds(100) {
            logger.warning("slow apply", metadata: ["entries": "\(entries)", "took": "\(duration)"])
        }
    }

    func snapshotSaved(index: UInt64, bytes: Int, duration: Duration) {
        next.snapshotSaved(index: index, bytes: bytes, duration: duration)
        logger.info("saved snapshot", metadata: ["index": "\(index)", "bytes": "\(bytes)", "took": "\(duration)"])
    }

    func leaderChanged(to leader: NodeID) {
        next.leaderChanged(to: leader)
        if leader == .none {
            logger.warning("lost the leader")
        } else {
            logger.info("leader changed", metadata: ["leader": "\(String(leader, radix: 16))"])
        }
    }

    func proposalFailed() { next.proposalFailed() }

    func heartbeatLate(to peer: NodeID, by: Duration, deadline: Duration) {
        next.heartbeatLate(to: peer, by: by, deadline: deadline)
        logger.warning(
            "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk",
            metadata: [
                "to": "\(String(peer, radix: 16))", "heartbeat-interval": "\(deadline / 2)", "expected-duration": "\(deadline)",
                "exceeded-duration": "\(by)",
            ])
    }
    func walWritten(bytes: Int) { next.walWritten(bytes: bytes) }
    func peerRoundTrip(to peer: NodeID, duration: Duration) { next.peerRoundTrip(to: peer, duration: duration) }

    func snapshotFailed(index: UInt64, error: String) {
        logger.error("cannot save a snapshot", metadata: ["index": "\(index)", "error": "\(error)"])
    }

    func snapshotUnreadable(_ reason: String) {
        logger.error("cannot send the snapshot to a follower that needs it", metadata: ["reason": "\(reason)"])
    }
}
