import Raft

/// Hears what a peer transport does, for metrics (etcd's
/// `etcd_network_peer_*`). Called on event-loop threads and the node loop,
/// so it must be thread-safe, cheap and must not block; every method has a
/// no-op default.
public protocol PeerTransportObserver: Sendable {
    /// One cycle's frames for `peer` were handed to its connection.
    func sent(bytes: Int, to peer: NodeID)
    /// A cycle's messages for `peer` were dropped: no connection yet, or its
    /// socket buffer is full (Raft resends what matters).
    func sendFailed(to peer: NodeID)
    /// Bytes read from a connection `peer` opened to this member.
    func received(bytes: Int, from peer: NodeID)
    /// A connection from `peer` sent a frame that does not decode; it is closed.
    func receiveFailed(from peer: NodeID)
    /// A connection this member opened to `peer` came up, or went down.
    func connected(to peer: NodeID)
    func disconnected(from peer: NodeID)
}

extension PeerTransportObserver {
    public func sent(bytes: Int, to peer: NodeID) {}
    public func sendFailed(to peer: NodeID) {}
    public func received(bytes: Int, from peer: NodeID) {}
    public func receiveFailed(from peer: NodeID) {}
    public func connected(to peer: NodeID) {}
    public func disconnected(from peer: NodeID) {}
}
