import Raft

/// Hears what a node loop does, for metrics. Called on the loop thread or the
/// apply thread, so it must be thread-safe, cheap and must not block; every
/// method has a no-op default.
public protocol NodeObserver: Sendable {
    /// One WAL write and fdatasync finished.
    func walSynced(duration: Duration)
    /// Bytes appended to the WAL (records, headers), synced or not.
    func walWritten(bytes: Int)
    /// A peer answered a heartbeat this leader sent it, after `duration`
    /// (sampled: one heartbeat in flight per peer at a time).
    func peerRoundTrip(to peer: NodeID, duration: Duration)
    /// This leader sent `peer` a heartbeat `by` later than `deadline` (two
    /// heartbeat intervals) after the previous one.
    func heartbeatLate(to peer: NodeID, by: Duration, deadline: Duration)
    /// A batch of committed entries was applied.
    func applied(entries: Int, duration: Duration)
    /// The leader this member knows changed (`.none` when it lost one).
    func leaderChanged(to leader: NodeID)
    /// A proposal was answered with a failure.
    func proposalFailed()
    /// A snapshot was written in the background and installed.
    func snapshotSaved(index: UInt64, bytes: Int, duration: Duration)
    /// The latest snapshot could not be read back to send to a follower
    /// that needs it (a damaged or missing file); reported once per reason.
    func snapshotUnreadable(_ reason: String)
    /// A snapshot could not be written (the next is tried `snapshotEvery`
    /// entries later).
    func snapshotFailed(index: UInt64, error: String)
}

extension NodeObserver {
    public func walSynced(duration: Duration) {}
    public func walWritten(bytes: Int) {}
    public func peerRoundTrip(to peer: NodeID, duration: Duration) {}
    public func heartbeatLate(to peer: NodeID, by: Duration, deadline: Duration) {}
    public func applied(entries: Int, duration: Duration) {}
    public func leaderChanged(to leader: NodeID) {}
    public func proposalFailed() {}
    public func snapshotSaved(index: UInt64, bytes: Int, duration: Duration) {}
    public func snapshotUnreadable(_ reason: String) {}
    public func snapshotFailed(index: UInt64, error: String) {}
}
