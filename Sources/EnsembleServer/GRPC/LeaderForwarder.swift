import EnsembleClient
import NIOCore
import NIOSSL
import Raft
import Synchronization

/// Hands requests that need the leader to the leader's client port when it
/// runs in another process, as etcd followers forward to their leader: the
/// request's bytes go unchanged to `/ensemble.forward` + the method path on
/// the leader, which serves them without forwarding again (so two members
/// that each think the other leads cannot bounce a request between them).
///
/// Only refusals are forwarded — a write this member refused certainly did
/// not happen here — so nothing is ever applied twice.
public final class LeaderForwarder: Sendable {
    /// Forwarded calls arrive under this prefix.
    public static let prefix = "/ensemble.forward"

    private let group: any EventLoopGroup
    /// For leaders whose client URL is `https://` (nil: none expected).
    private let tls: ReloadingTLSContext?
    /// Each member's client address, and whether it speaks TLS.
    private let state = Mutex<(urls: [NodeID: (address: HostPort, tls: Bool)], connections: [NodeID: GRPCConnection])>(([:], [:]))
    /// How long a forwarded call may take (etcd's request timeout plus margin).
    let timeout: Duration
    /// How long to wait for an unknown leader's client URLs to be published.
    let addressWait: Duration

    public init(
        group: any EventLoopGroup, tls: ReloadingTLSContext? = nil, timeout: Duration = .seconds(8), addressWait: Duration = .seconds(3)
    ) {
        self.group = group
        self.tls = tls
        self.timeout = timeout
        self.addressWait = addressWait
    }

    /// The members' client addresses, from the directory (first usable URL each).
    public func setClientURLs(_ urls: [NodeID: [String]]) {
        let parsed = urls.compactMapValues { urls in
            urls.lazy.compactMap { url in HostPort(url: url).map { (address: $0, tls: url.hasPrefix("https://")) } }.first
        }
        let stale = state.withLock { state -> [GRPCConnection] in
            let changed = state.connections.filter { id, _ in
                parsed[id]?.address != state.urls[id]?.address || parsed[id]?.tls != state.urls[id]?.tls
            }
            for id in changed.keys { state.connections[id] = nil }
            state.urls = parsed
            return Array(changed.values)
        }
        for connection in stale { Task { await connection.close() } }
    }

    /// What a client hears when the leader's client URL cannot be reached
    /// from here: etcd's words for a follower that lost its leader's
    /// connection (not "no leader": there is one).
    static let unreachable = GRPCStatus.unavailable("etcdserver: request timed out, possibly due to connection lost")

    /// Sends `request` for `path` to `leader`; nil when its address is unknown.
    public func forward(_ path: String, _ request: [UInt8], to leader: NodeID) async -> Result<[UInt8], GRPCStatus>? {
        guard let connection = await connection(to: leader) else {
            // Known but not reachable (a client URL peers cannot reach: it
            // names localhost, or a firewall stands between).
            return state.withLock({ $0.urls[leader] }) == nil ? nil : .failure(Self.unreachable)
        }
        do {
            return .success(try await connection.unary(Self.prefix + path, request, timeout: timeout))
        } catch let error as GRPCCallError {
            // The connection is shared by every forwarded call: only a broken one
            // is dropped (a status such as "no leader" from the leader is not).
            if !connection.isOpen { drop(leader, connection) }
            return .failure(GRPCStatus(code: error.code, message: error.message))
        } catch {
            if !connection.isOpen { drop(leader, connection) }
            return .failure(.unavailable("etcdserver: leader unreachable: \(error)"))
        }
    }

    private func connection(to id: NodeID) async -> GRPCConnection? {
        var (existing, address) = state.withLock { ($0.connections[id], $0.urls[id]) }
        if let existing { return existing }
        // A leader that has just started publishes its client URLs through
        // the log within a second or so: wait for them rather than refuse.
        let deadline = ContinuousClock.now + addressWait
        while address == nil, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
            address = state.withLock { $0.urls[id] }
        }
        guard let address else { return nil }
        var options = GRPCConnection.Options()
        if address.tls {
            guard let tls else { return nil }
            options.tls = tls.current()
        }
        guard let made = try? await GRPCConnection.connect(
            host: address.address.host, port: address.address.port, group: group, options: options)
        else { return nil }
        let (winner, loser) = state.withLock { state -> (GRPCConnection, GRPCConnection?) in
            if let raced = state.connections[id] { return (raced, made) }
            state.connections[id] = made
            return (made, nil)
        }
        if let loser { await loser.close() }
        return winner
    }

    private func drop(_ id: NodeID, _ connection: GRPCConnection) {
        let removed = state.withLock { state -> Bool in
            guard state.connections[id] === connection else { return false }
            state.connections[id] = nil
            return true
        }
        if removed { Task { await connection.close() } }
    }

    /// Closes every connection.
    public func shutdown() async {
        let all = state.withLock { state -> [GRPCConnection] in
            defer { state.connections = [:] }
            return Array(state.connections.values)
        }
        for connection in all { await connection.close() }
    }

    /// Wraps every unary route: a refusal naming another leader is forwarded
    /// there; the route is also offered under ``prefix`` without forwarding.
    public func install(on router: inout GRPCRouter) {
        for (path, handler) in router.unary {
            router.unary[Self.prefix + path] = handler
            router.unary[path] = .direct { [self] bytes, reply in
                handler.serve(bytes) { result in
                    guard case let .failure(status) = result, status.leader != .none else { return reply(result) }
                    Task {
                        let forwarded = await self.forward(path, bytes, to: status.leader)
                        reply(forwarded.map { $0.map(GRPCResponse.init(bytes:)) } ?? result)
                    }
                }
            }
        }
    }
}
