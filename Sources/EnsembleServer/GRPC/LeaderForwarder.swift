import EnsembleClient
import NIOCore
import NIOSSL
import Raft
import Synchronization

/// Hands requests that need the leader to the leader when it runs in another
/// process, as etcd followers forward to their leader: the request's bytes go
/// unchanged to `/ensemble.forward` + the method path on the leader, which
/// serves them without forwarding again (so two members that each think the
/// other leads cannot bounce a request between them).
///
/// The call goes to the leader's **peer URL**, as etcd's do: its peer port
/// serves these routes beside Raft frames (`NIOPeerTransport.serveHTTP2`),
/// inside the peers' TLS when they use it, so members need not reach each
/// other's client URLs (often bound to localhost). A leader whose peer port
/// does not answer HTTP/2 (a member of an older version, during a rolling
/// upgrade) is reached at its client URL instead; that is decided when
/// connecting, before any call is sent, so no call can run twice.
///
/// Only refusals are forwarded — a write this member refused certainly did
/// not happen here — so nothing is ever applied twice.
public final class LeaderForwarder: Sendable {
    /// Forwarded calls arrive under this prefix.
    public static let prefix = "/ensemble.forward"

    /// Where a member is reached, and whether over TLS.
    struct Address: Equatable {
        var hostPort: HostPort
        var tls: Bool
    }

    /// Which of a member's URLs a connection was made to.
    enum Port { case peer, client }

    /// A connection and the address it was made to: it is replaced only when
    /// that address changes, not the member's other one.
    struct Kept {
        let connection: GRPCConnection
        let port: Port
        let address: Address
    }

    private struct State {
        var peerURLs: [NodeID: Address] = [:]
        var clientURLs: [NodeID: Address] = [:]
        var connections: [NodeID: Kept] = [:]
        /// Connections being made: calls that find one wait for it rather
        /// than dial too (a thousand keep-alives after a leader change).
        var dialing: [NodeID: Task<GRPCConnection?, Never>] = [:]
        var closed = false
        /// Connections closing once their calls have had their time
        /// (``retire(_:)``); shutdown closes them at once.
        var retiring: [ObjectIdentifier: GRPCConnection] = [:]
        /// Connections begun, for tests.
        var dials = 0

        func address(of id: NodeID, _ port: Port) -> Address? {
            port == .peer ? peerURLs[id] : clientURLs[id]
        }
    }

    private let group: any EventLoopGroup
    /// For leaders whose client URL is `https://` (nil: none expected).
    private let tls: ReloadingTLSContext?
    /// For `https://` peer URLs: the peer transport's client context.
    private let peerTLS: (@Sendable () -> NIOSSLContext)?
    private let state = Mutex(State())
    /// How long a forwarded call may take (etcd's request timeout plus margin).
    let timeout: Duration
    /// How long to wait for an unknown leader's client URLs to be published.
    let addressWait: Duration

    public init(
        group: any EventLoopGroup, tls: ReloadingTLSContext? = nil, peerTLS: (@Sendable () -> NIOSSLContext)? = nil,
        timeout: Duration = .seconds(8), addressWait: Duration = .seconds(3)
    ) {
        self.group = group
        self.tls = tls
        self.peerTLS = peerTLS
        self.timeout = timeout
        self.addressWait = addressWait
    }

    /// The members' client addresses, from the directory (first usable URL each).
    public func setClientURLs(_ urls: [NodeID: [String]]) {
        update { $0.clientURLs = Self.parse(urls) }
    }

    /// The members' peer addresses, from the directory (first usable URL each).
    public func setPeerURLs(_ urls: [NodeID: [String]]) {
        update { $0.peerURLs = Self.parse(urls) }
    }

    private static func parse(_ urls: [NodeID: [String]]) -> [NodeID: Address] {
        urls.compactMapValues { urls in
            urls.lazy.compactMap { url in HostPort(url: url).map { Address(hostPort: $0, tls: url.hasPrefix("https://")) } }.first
        }
    }

    /// Applies `change` and retires connections made to addresses that moved.
    private func update(_ change: (inout State) -> Void) {
        let stale = state.withLock { state -> [GRPCConnection] in
            change(&state)
            let moved = state.connections.filter { id, kept in state.address(of: id, kept.port) != kept.address }
            for id in moved.keys { state.connections[id] = nil }
            return moved.values.map(\.connection)
        }
        for connection in stale { retire(connection) }
    }

    /// Closes `connection` once the calls it carries have had their time:
    /// closing at once would fail calls the leader may have carried out.
    private func retire(_ connection: GRPCConnection) {
        let key = ObjectIdentifier(connection)
        guard state.withLock({ state in
            guard !state.closed else { return false }
            state.retiring[key] = connection
            return true
        }) else {
            Task { await connection.close() }
            return
        }
        let timeout = self.timeout
        Task {
            try? await Task.sleep(for: timeout)
            guard let due = state.withLock({ $0.retiring.removeValue(forKey: key) }) else { return }
            await due.close()
        }
    }

    /// What a client hears when no connection to the leader can be made
    /// from here: nothing was sent, so the call certainly did not happen,
    /// and for this member there is no leader it can use. (etcd's follower
    /// would let the proposal time out, "request timed out, possibly due to
    /// connection lost", leaving the client unsure whether it happened —
    /// and a client that retries at once then piles up writes of unknown
    /// outcome.)
    static let unreachable = GRPCStatus.unavailable("etcdserver: no leader")

    /// Sends `request` for `path` to `leader`; nil when its address is unknown.
    public func forward(_ path: String, _ request: [UInt8], to leader: NodeID) async -> Result<[UInt8], GRPCStatus>? {
        // Twice at most: a call the connection refused before sending it (it
        // was ending, or out of stream IDs) goes once more on a new one.
        for attempt in 0..<2 {
            guard let connection = await connection(to: leader) else {
                // Known but not reachable (down, or cut off from here).
                return state.withLock({ $0.peerURLs[leader] == nil && $0.clientURLs[leader] == nil }) ? nil : .failure(Self.unreachable)
            }
            do {
                return .success(try await connection.unary(Self.prefix + path, request, timeout: timeout))
            } catch let error as GRPCCallError {
                // The connection is shared by every forwarded call: only a broken one
                // is dropped (a status such as "no leader" from the leader is not).
                if !connection.isOpen { drop(leader, connection) }
                if Self.refusedUnsent(error) {
                    if attempt == 0 { continue }
                    return .failure(Self.unreachable)
                }
                return .failure(Self.status(of: error))
            } catch {
                if !connection.isOpen { drop(leader, connection) }
                return .failure(.unavailable("etcdserver: leader unreachable: \(error)"))
            }
        }
        return .failure(Self.unreachable)
    }

    /// A call the connection refused without sending it (EnsembleClient's
    /// refusals name the connection and say nothing of a call in progress).
    static func refusedUnsent(_ error: GRPCCallError) -> Bool {
        error.code == GRPCCallError.unavailableCode && error.message.hasPrefix("connection to ")
            && !error.message.contains("before the call completed")
    }

    /// What the client hears of a forwarded call that failed: the leader's
    /// status as it sent it; failures of this member's own client in etcd's
    /// words (clientv3 takes "context deadline exceeded" for its own
    /// context and would not retry): the deadline as etcd's ErrTimeout, a
    /// connection lost mid-call as ErrTimeoutDueToConnectionLost.
    static func status(of error: GRPCCallError) -> GRPCStatus {
        if error == .deadlineExceeded { return KVService.status(NodeError.outcomeUnknown) }
        if error.code == GRPCCallError.unavailableCode && error.message.hasPrefix("connection to ") {
            return .unavailable("etcdserver: request timed out, possibly due to connection lost")
        }
        return GRPCStatus(code: error.code, message: error.message)
    }

    private func connection(to id: NodeID) async -> GRPCConnection? {
        let (existing, broken, dial) = state.withLock {
            state -> (GRPCConnection?, GRPCConnection?, Task<GRPCConnection?, Never>?) in
            var broken: GRPCConnection?
            if let kept = state.connections[id] {
                // A connection that broke since its last call (the leader
                // restarted, say) is replaced now, not after a call fails on it.
                if kept.connection.isOpen { return (kept.connection, nil, nil) }
                broken = kept.connection
                state.connections[id] = nil
            }
            if state.closed { return (nil, broken, nil) }
            if let dialing = state.dialing[id] { return (nil, broken, dialing) }
            let dial = Task { await self.dial(id) }
            state.dialing[id] = dial
            state.dials += 1
            return (nil, broken, dial)
        }
        // Calls may still run on a connection that is ending (a graceful
        // GOAWAY, its stream IDs used up): it closes once they are done.
        if let broken { retire(broken) }
        if let existing { return existing }
        return await dial?.value
    }

    /// How many connections were begun so far.
    var dials: Int { state.withLock { $0.dials } }

    /// Makes the connection to `id`, and keeps it for the calls after.
    private func dial(_ id: NodeID) async -> GRPCConnection? {
        defer { state.withLock { _ = $0.dialing.removeValue(forKey: id) } }
        var (peer, client) = state.withLock { ($0.peerURLs[id], $0.clientURLs[id]) }
        if let peer, let made = await connect(peer, tls: peerTLS?()) {
            return await keep(Kept(connection: made, port: .peer, address: peer), for: id)
        }
        // No peer port that speaks HTTP/2: the client URL. A leader that has
        // just started publishes those through the log within a second or
        // so: wait for them rather than refuse.
        let deadline = ContinuousClock.now + addressWait
        while client == nil, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
            client = state.withLock { $0.clientURLs[id] }
        }
        guard let client, let made = await connect(client, tls: tls?.current()) else { return nil }
        return await keep(Kept(connection: made, port: .client, address: client), for: id)
    }

    /// A connection to `address` whose server has answered in HTTP/2; nil if
    /// it cannot be reached, or TLS is wanted and there is no context for it.
    private func connect(_ address: Address, tls: NIOSSLContext?) async -> GRPCConnection? {
        var options = GRPCConnection.Options()
        options.waitForServerPreface = true
        options.connectTimeout = .seconds(2)
        // A leader gone silently (the network lost the connection) is
        // redialed rather than timing out every forwarded call for minutes.
        options.userTimeout = .seconds(10)
        if address.tls {
            guard let tls else { return nil }
            options.tls = tls
        }
        return try? await GRPCConnection.connect(
            host: address.hostPort.host, port: address.hostPort.port, group: group, options: options)
    }

    /// Keeps `made` as the connection to `id`. One made to an address that
    /// moved while dialing serves the calls that waited for it, then retires.
    private func keep(_ made: Kept, for id: NodeID) async -> GRPCConnection? {
        enum Outcome { case kept, unkept, refused }
        let outcome = state.withLock { state -> Outcome in
            if state.closed { return .refused }
            guard state.address(of: id, made.port) == made.address else { return .unkept }
            state.connections[id] = made
            return .kept
        }
        switch outcome {
        case .kept: return made.connection
        case .unkept:
            retire(made.connection)
            return made.connection
        case .refused:
            await made.connection.close()
            return nil
        }
    }

    private func drop(_ id: NodeID, _ connection: GRPCConnection) {
        let removed = state.withLock { state -> Bool in
            guard state.connections[id]?.connection === connection else { return false }
            state.connections[id] = nil
            return true
        }
        if removed { retire(connection) }
    }

    /// Closes every connection.
    public func shutdown() async {
        let all = state.withLock { state -> [GRPCConnection] in
            state.closed = true
            defer {
                state.connections = [:]
                state.retiring = [:]
            }
            return state.connections.values.map(\.connection) + state.retiring.values
        }
        for connection in all { await connection.close() }
    }

    /// Wraps every unary route: a refusal naming another leader is forwarded
    /// there; the route is also offered under ``prefix`` without forwarding.
    public func install(on router: inout GRPCRouter) {
        for (path, handler) in router.unary {
            router.unary[Self.prefix + path] = handler
            let settle = router.afterForward[path]
            router.unary[path] = .direct { [self] bytes, reply in
                handler.serve(bytes) { result in
                    guard case let .failure(status) = result, status.leader != .none else { return reply(result) }
                    Task {
                        var forwarded = await self.forward(path, bytes, to: status.leader)
                        if let settle, case let .success(answer)? = forwarded { forwarded = .success(await settle(answer)) }
                        reply(forwarded.map { $0.map(GRPCResponse.init(bytes:)) } ?? result)
                    }
                }
            }
        }
    }
}
