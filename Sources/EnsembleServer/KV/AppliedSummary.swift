import KV
import Synchronization

/// What the applied state says — its revision and raised alarms — published
/// by the apply thread after each entry and restore, so that Status, /health
/// and the Alarm answers read it at once instead of waiting behind a long
/// apply queue or a snapshot being installed (etcd answers Status from its
/// store, not after pending applies; `etcdctl endpoint status` gives up after
/// 5 s, just when an operator watches a member catch up).
public final class AppliedSummary: Sendable {
    private struct State {
        var revision: Int64 = 0
        var alarms: Set<Alarm> = []
    }
    private let state = Mutex(State())

    public init() {}

    /// The applied revision.
    public var revision: Int64 { state.withLock { $0.revision } }
    /// The raised alarms, in order.
    public var alarms: [Alarm] { state.withLock { $0.alarms }.sorted() }

    func publish(revision: Int64, alarms: Set<Alarm>) {
        state.withLock { state in
            state.revision = revision
            // Most applies change no alarm: keep the stored set (no copy).
            if state.alarms != alarms { state.alarms = alarms }
        }
    }
}
