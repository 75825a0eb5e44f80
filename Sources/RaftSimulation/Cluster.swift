import Raft

/// A small cluster for scenario tests, in the spirit of etcd-io/raft's
/// interaction tests: messages wait in one queue until the test delivers them
/// (`stabilize`, `deliver`), links can be cut, members crashed and restarted.
/// The ``Oracle`` watches every Ready, so each scenario also checks safety.
public final class Cluster {
    public private(set) var members: [NodeID: SimNode] = [:]
    /// Messages sent and not yet delivered, oldest first.
    public var inbox: [Message] = []
    /// Directed links that drop everything: (from, to).
    public var cut: Set<Pair> = []
    /// Messages for which this returns true are lost in transit.
    public var dropIf: ((Message) -> Bool)?
    public internal(set) var oracle = Oracle()
    /// Entries each member has applied, in order.
    public private(set) var applied: [NodeID: [Entry]] = [:]
    /// Read states each member has reported.
    public private(set) var readStates: [NodeID: [ReadState]] = [:]
    /// Answers to proposals each member forwarded, from its Readys.
    public private(set) var forwarded: [NodeID: [ForwardedProposals]] = [:]
    /// Every message ever sent, for tests that count them.
    public private(set) var sent: [Message] = []
    /// Every Ready whose step 2 the members did, in order.
    public private(set) var persisted: [(member: NodeID, ready: Ready)] = []
    let configure: (inout RaftConfig) -> Void

    public struct Pair: Hashable {
        public var from: NodeID
        public var to: NodeID
        public init(from: NodeID, to: NodeID) {
            self.from = from
            self.to = to
        }
    }

    /// A cluster of `voters` founding members with ids 1...voters.
    public init(voters: Int, configure: @escaping (inout RaftConfig) -> Void = { _ in }) throws {
        self.configure = configure
        let ids = (1...voters).map { NodeID($0) }
        for id in ids {
            members[id] = try SimNode(id: id, config: config(for: id), bootstrap: ids)
        }
        for id in ids { process(id) }
    }

    func config(for id: NodeID) -> RaftConfig {
        var config = RaftConfig(id: id)
        config.seed = 42
        configure(&config)
        return config
    }

    public var ids: [NodeID] { members.keys.sorted() }

    public func node(_ id: NodeID) -> RaftNode<MemoryStorage> {
        guard let raft = members[id]?.raft else { fatalError("n\(id) is not running") }
        return raft
    }

    /// Adds a member that starts empty (it joins through a membership change).
    public func addEmptyMember(_ id: NodeID) throws {
        members[id] = try SimNode(id: id, config: config(for: id), bootstrap: nil)
    }

    /// Runs `body` against member `id`'s RaftNode, then handles its Ready.
    @discardableResult
    public func on<T>(_ id: NodeID, _ body: (inout RaftNode<MemoryStorage>) throws -> T) rethrows -> T? {
        guard let member = members[id] else { return nil }
        let result = try member.with(body)
        process(id)
        return result
    }

    public func tick(_ id: NodeID, times: Int = 1) {
        for _ in 0..<times { on(id) { $0.tick() } }
    }

    /// Ticks every running member `times` times, delivering messages after each round.
    public func tickAll(times: Int = 1) {
        for _ in 0..<times {
            for id in ids where members[id]?.isUp == true { tick(id) }
            stabilize()
        }
    }

    /// Makes `id` campaign and delivers messages until nothing moves.
    public func elect(_ id: NodeID) {
        on(id) { $0.campaign() }
        stabilize()
    }

    public func isolate(_ id: NodeID) {
        for other in ids where other != id {
            cut.insert(Pair(from: id, to: other))
            cut.insert(Pair(from: other, to: id))
        }
    }

    public func healAll() { cut.removeAll() }

    public func crash(_ id: NodeID) { members[id]?.crash() }
    /// A crash that also loses what was written but not synced.
    public func powerLoss(_ id: NodeID) { members[id]?.crash(powerLoss: true) }

    public func restart(_ id: NodeID) throws {
        guard let member = members[id] else { return }
        try member.start(seedSalt: 1)
        oracle.observeRestart(member)
        process(id)
    }

    /// Delivers queued messages (and whatever they cause) until none are left.
    public func stabilize(maxMessages: Int = 100_000) {
        var delivered = 0
        while !inbox.isEmpty && delivered < maxMessages {
            deliver(inbox.removeFirst())
            delivered += 1
        }
    }

    /// Delivers one message, unless its link is cut or its target is down.
    public func deliver(_ message: Message) {
        guard !cut.contains(Pair(from: message.from, to: message.to)),
            dropIf?(message) != true,
            let target = members[message.to], target.isUp
        else { return }
        target.raft?.step(message)
        process(message.to)
        if message.kind == .snapshot {
            members[message.from]?.raft?.reportSnapshot(to: message.to, succeeded: true)
            process(message.from)
        }
    }

    /// Removes and returns the queued messages that match `filter`.
    public func take(where filter: (Message) -> Bool) -> [Message] {
        let taken = inbox.filter(filter)
        inbox.removeAll(where: filter)
        return taken
    }

    func process(_ id: NodeID) {
        members[id]?.processReady(self)
    }
}

extension Cluster: ReadyHandler {
    func readyTaken(_ node: SimNode, _ ready: Ready) {
        if let soft = ready.softState { oracle.observeRole(node, soft) }
    }

    func send(_ message: Message) {
        sent.append(message)
        inbox.append(message)
    }

    func crashBeforePersist(_ node: SimNode) -> Bool { false }

    func persisted(_ node: SimNode, _ ready: Ready) {
        oracle.observePersisted(node, ready.entries)
        persisted.append((node.id, ready))
    }

    func installedSnapshot(_ node: SimNode, _ snapshot: Snapshot) { oracle.observeSnapshot(node, snapshot) }

    func applied(_ node: SimNode, _ entry: Entry) {
        oracle.observeApplied(node, entry, hash: node.stateMachine.hash)
        applied[node.id, default: []].append(entry)
    }

    func readyLoopStuck(_ node: SimNode) { oracle.fail("n\(node.id) kept producing Readys: livelock") }

    func advanced(_ node: SimNode, _ ready: Ready) {
        oracle.observeCommit(node)
        readStates[node.id, default: []].append(contentsOf: ready.readStates)
        forwarded[node.id, default: []].append(contentsOf: ready.forwarded)
    }
}
