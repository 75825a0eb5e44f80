/// A request-rate limit with etcd's benchmark semantics (Go's
/// `rate.NewLimiter(rate, 1)` with `Wait`): requests start at least
/// `1/rate` apart, and an idle period earns no burst beyond one request.
///
/// Pure: time is passed in (as the time since the run began), and the answer is
/// how long the caller must wait before it starts. Shared by all clients of a
/// run behind a lock, so the limit is on the whole run, not per client.
public struct RateLimiter: Sendable {
    /// Time between request starts; nil when unlimited.
    public let interval: Duration?
    /// The earliest start of the next request (the reservation point).
    private var next: Duration = .zero

    /// `perSecond` 0 means no limit.
    public init(perSecond: Int) {
        interval = perSecond > 0 ? .seconds(1) / perSecond : nil
    }

    /// Reserves the next start at or after `now`; returns how long to wait for it.
    public mutating func reserve(now: Duration) -> Duration {
        guard let interval else { return .zero }
        let start = max(now, next)
        next = start + interval
        return start - now
    }
}
