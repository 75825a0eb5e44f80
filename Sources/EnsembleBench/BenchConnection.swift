import EnsembleClient
import NIOCore
import Synchronization

/// One of a run's connections, dialled again to the same endpoint once it is
/// lost, so that a member killed mid-run costs its requesters the calls they
/// had in flight and the time it is away — not every request left in the
/// run, which a closed connection would fail in microseconds each.
///
/// Requesters that find the connection closed wait for one shared dial
/// (``whenOpen(_:)``); a failed dial releases them all (each then counts one
/// failed request, as clientv3's retries give up) and the next waits longer:
/// at once, then 25 ms doubling to 1 s, so a member that stays away paces
/// its requesters' errors instead of spinning on them.
public final class BenchConnection: Sendable {
    private struct State {
        var connection: GRPCConnection
        var dialing = false
        var waiters: [@Sendable (GRPCConnection?) -> Void] = []
        /// Dials that failed in a row (sets the next one's delay).
        var failedDials = 0
        var closed = false
        /// Dials made after the first connection, for tests.
        var redials = 0
    }

    private let state: Mutex<State>
    private let group: any EventLoopGroup
    private let options: GRPCConnection.Options
    let host: String
    let port: Int

    init(_ connection: GRPCConnection, group: any EventLoopGroup, options: GRPCConnection.Options) {
        state = Mutex(State(connection: connection))
        self.group = group
        self.options = options
        host = connection.host
        port = connection.port
    }

    /// The connection as it is now (possibly closed).
    public var current: GRPCConnection { state.withLock { $0.connection } }

    /// Dials made to replace a lost connection.
    public var redials: Int { state.withLock { $0.redials } }

    /// Calls `body` with an open connection: the current one at once, or the
    /// next that a dial opens; with nil when that dial fails or the run's
    /// connections are closing. `body` runs on no particular thread.
    public func whenOpen(_ body: @escaping @Sendable (GRPCConnection?) -> Void) {
        enum Next { case now(GRPCConnection?), dial(delay: Duration), wait }
        let next = state.withLock { state -> Next in
            if state.closed { return .now(nil) }
            if state.connection.isOpen { return .now(state.connection) }
            state.waiters.append(body)
            if state.dialing { return .wait }
            state.dialing = true
            state.redials += 1
            let delay: Duration = state.failedDials == 0 ? .zero : .milliseconds(25 << min(state.failedDials - 1, 5))
            return .dial(delay: min(delay, .seconds(1)))
        }
        switch next {
        case let .now(connection): body(connection)
        case .wait: break
        case let .dial(delay): Task { await self.dial(after: delay) }
        }
    }

    /// An open connection, as ``whenOpen(_:)``, or the current (closed) one.
    public func open() async -> GRPCConnection {
        let connection = await withCheckedContinuation { continuation in
            whenOpen { continuation.resume(returning: $0) }
        }
        return connection ?? current
    }

    private func dial(after delay: Duration) async {
        if delay > .zero { try? await Task.sleep(for: delay) }
        let dialed = try? await GRPCConnection.connect(host: host, port: port, group: group, options: options)
        let (waiters, keep) = state.withLock { state -> ([@Sendable (GRPCConnection?) -> Void], Bool) in
            state.dialing = false
            let keep = dialed != nil && !state.closed
            if let dialed, keep {
                state.connection = dialed
                state.failedDials = 0
            } else {
                state.failedDials += 1
            }
            defer { state.waiters = [] }
            return (state.waiters, keep)
        }
        if let dialed, !keep { await dialed.close() }
        for waiter in waiters { waiter(keep ? dialed : nil) }
    }

    /// Closes the connection; later ``whenOpen(_:)`` calls get nil.
    func close() async {
        let connection = state.withLock { state -> GRPCConnection in
            state.closed = true
            return state.connection
        }
        await connection.close()
    }
}
