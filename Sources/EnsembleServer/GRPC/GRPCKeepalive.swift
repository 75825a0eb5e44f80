/// When the server checks that a client connection is still there, as etcd's
/// `--grpc-keepalive-interval` and `--grpc-keepalive-timeout` do: a
/// connection from which nothing has been read for `interval` gets a PING,
/// and is closed if still nothing arrives within `timeout`. A client that
/// vanished without closing its socket (a crashed host, a cut network) would
/// otherwise hold its watches and leases' keep-alive streams forever.
public struct GRPCKeepalive: Sendable, Equatable {
    public var interval: Duration
    public var timeout: Duration

    public init(interval: Duration, timeout: Duration) {
        self.interval = interval
        self.timeout = timeout
    }

    /// etcd's defaults: 2 h and 20 s.
    public static let etcd = GRPCKeepalive(interval: .seconds(7200), timeout: .seconds(20))
}
