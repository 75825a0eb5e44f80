import Prometheus
import Raft
import RaftTransport
import Synchronization

/// etcd's `etcd_network_peer_*` series for each peer, made when the peer is
/// first seen and labelled with member ids in hex, as etcd labels them.
final class PeerMetrics: Sendable {
    let sentBytes: Counter
    let receivedBytes: Counter
    let receivedFailures: Counter
    let sentFailures: Counter
    let roundTrip: DurationHistogram
    let active: Gauge
    let disconnected: Counter

    /// etcd 3.4's peer round-trip buckets: 100 µs to about 3.3 s, doubling.
    static let roundTripBuckets: [Duration] = (0..<16).map { .microseconds(100 << $0) }

    init(registry: PrometheusCollectorRegistry, local: NodeID, peer: NodeID) {
        let describe = ServerMetrics.describe
        let to = [("To", hex(peer))]
        let pair = [("Local", hex(local)), ("Remote", hex(peer))]
        sentBytes = registry.makeCounter(
            descriptor: describe("etcd_network_peer_sent_bytes_total", "Bytes sent to peers."), labels: to)
        receivedBytes = registry.makeCounter(
            descriptor: describe("etcd_network_peer_received_bytes_total", "Bytes received from peers."),
            labels: [("From", hex(peer))])
        receivedFailures = registry.makeCounter(
            descriptor: describe("etcd_network_peer_received_failures_total", "Connections from peers closed on a frame that does not decode."),
            labels: [("From", hex(peer))])
        sentFailures = registry.makeCounter(
            descriptor: describe("etcd_network_peer_sent_failures_total", "Sends to peers dropped (not connected, or backed up)."),
            labels: to)
        roundTrip = registry.makeDurationHistogram(
            descriptor: describe("etcd_network_peer_round_trip_time_seconds", "Heartbeat round trips from the leader to peers."),
            labels: to, buckets: Self.roundTripBuckets)
        active = registry.makeGauge(descriptor: describe("etcd_network_active_peers", "Connections to peers that are up."), labels: pair)
        disconnected = registry.makeCounter(
            descriptor: describe("etcd_network_disconnected_peers_total", "Connections to peers that went down."), labels: pair)
    }
}

extension ServerMetrics: PeerTransportObserver {
    public func sent(bytes: Int, to peer: NodeID) { metrics(for: peer).sentBytes.increment(by: Int64(bytes)) }
    public func sendFailed(to peer: NodeID) { metrics(for: peer).sentFailures.increment() }
    public func received(bytes: Int, from peer: NodeID) { metrics(for: peer).receivedBytes.increment(by: Int64(bytes)) }
    public func receiveFailed(from peer: NodeID) { metrics(for: peer).receivedFailures.increment() }
    public func connected(to peer: NodeID) { metrics(for: peer).active.set(to: 1.0) }
    public func disconnected(from peer: NodeID) {
        let metrics = metrics(for: peer)
        metrics.active.set(to: 0.0)
        metrics.disconnected.increment()
    }
}
