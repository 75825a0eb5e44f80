/// When the server checks that a client connection is still there, as etcd's
/// `--grpc-keepalive-interval` and `--grpc-keepalive-timeout` do: a
/// connection from which nothing has been read for `interval` gets a PING,
/// and is closed if still nothing arrives within `timeout`. A client that
/// vanished without closing its socket (a crashed host, a cut network) would
/// otherwise hold its watches and leases' keep-alive streams forever.
///
/// `minimumTime` is etcd's `--grpc-keepalive-min-time`, the other direction:
/// the shortest interval at which a client may ping the server. A client
/// that pings faster (or pings at all with no call open) gets GOAWAY
/// ENHANCE_YOUR_CALM "too_many_pings" on its third offence, as from etcd's
/// grpc-go server (`HTTP2Connection.PingPolicy`).
public struct GRPCKeepalive: Sendable, Equatable {
    public var interval: Duration
    public var timeout: Duration
    public var minimumTime: Duration

    public init(interval: Duration, timeout: Duration, minimumTime: Duration = .seconds(5)) {
        self.interval = interval
        self.timeout = timeout
        self.minimumTime = minimumTime
    }

    /// etcd's defaults: 2 h, 20 s and 5 s.
    public static let etcd = GRPCKeepalive(interval: .seconds(7200), timeout: .seconds(20), minimumTime: .seconds(5))
}
