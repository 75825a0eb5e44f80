import Raft
import Synchronization

/// Carries Raft messages between members. The node loop hands it each cycle's
/// messages in one call (one write per peer per cycle on a real network);
/// received messages go to the handler the loop registered.
public protocol PeerTransport: AnyObject, Sendable {
    /// Sends messages; never blocks the loop. Delivery is best effort: Raft
    /// retries what is lost. Returns the peers whose messages were dropped
    /// unsent (no connection yet, a cut link, a full buffer) — certainly not
    /// delivered, which is what the loop needs to know of what Raft does not
    /// retry (a follower's forwarded proposals and read requests).
    @discardableResult
    func send(_ messages: [Message]) -> Set<NodeID>
    /// Registers where messages for `member` are delivered.
    func register(_ member: NodeID, deliver: @escaping @Sendable ([Message]) -> Void)
    func unregister(_ member: NodeID)
    /// The peers `member` has had a working link to, each with since when
    /// without a break (etcd's ActiveSince); empty where links are not tracked.
    func linkedPeers(of member: NodeID) -> [NodeID: ContinuousClock.Instant]
}

extension PeerTransport {
    public func linkedPeers(of member: NodeID) -> [NodeID: ContinuousClock.Instant] { [:] }
}

/// Delivers messages between members in one process, for tests and the local
/// development cluster. Links can be cut to model partitions.
public final class InMemoryTransport: PeerTransport {
    private struct State {
        var handlers: [NodeID: @Sendable ([Message]) -> Void] = [:]
        var cut: Set<[NodeID]> = []
        /// When each member registered, and when cut links were last healed:
        /// a link is up since the later of them.
        var registered: [NodeID: ContinuousClock.Instant] = [:]
        var healed: ContinuousClock.Instant?
    }

    private let state = Mutex(State())

    public init() {}

    public func register(_ member: NodeID, deliver: @escaping @Sendable ([Message]) -> Void) {
        state.withLock {
            $0.handlers[member] = deliver
            $0.registered[member] = .now
        }
    }

    public func unregister(_ member: NodeID) {
        state.withLock {
            $0.handlers[member] = nil
            $0.registered[member] = nil
        }
    }

    public func linkedPeers(of member: NodeID) -> [NodeID: ContinuousClock.Instant] {
        state.withLock { state in
            guard let mine = state.registered[member] else { return [:] }
            var linked: [NodeID: ContinuousClock.Instant] = [:]
            for (peer, since) in state.registered where peer != member && !state.cut.contains([member, peer]) {
                linked[peer] = [mine, since, state.healed].compactMap { $0 }.max()
            }
            return linked
        }
    }

    /// Drops everything between `a` and `b`, both ways.
    public func partition(_ a: NodeID, _ b: NodeID) {
        state.withLock {
            $0.cut.insert([a, b])
            $0.cut.insert([b, a])
        }
    }

    /// Drops what `from` sends to `to` only (a one-way fault: a firewall
    /// rule, a refused certificate).
    public func cut(from: NodeID, to: NodeID) {
        state.withLock { _ = $0.cut.insert([from, to]) }
    }

    /// Cuts `member` off from everyone.
    public func isolate(_ member: NodeID, from others: [NodeID]) {
        for other in others where other != member { partition(member, other) }
    }

    public func heal() {
        state.withLock {
            $0.cut.removeAll()
            $0.healed = .now
        }
    }

    @discardableResult
    public func send(_ messages: [Message]) -> Set<NodeID> {
        var batches: [NodeID: [Message]] = [:]
        var dropped: Set<NodeID> = []
        let handlers = state.withLock { state -> [NodeID: @Sendable ([Message]) -> Void] in
            for message in messages {
                if state.cut.contains([message.from, message.to]) {
                    dropped.insert(message.to)
                } else {
                    batches[message.to, default: []].append(message)
                }
            }
            return state.handlers
        }
        for (to, batch) in batches {
            if let handler = handlers[to] { handler(batch) } else { dropped.insert(to) }
        }
        return dropped
    }
}
