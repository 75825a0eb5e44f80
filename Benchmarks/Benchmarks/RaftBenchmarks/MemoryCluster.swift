import Raft

/// Three RaftNodes over MemoryStorage with messages handed straight across: the
/// consensus core's own cost, with no network, disk or harness in the way.
final class MemoryCluster {
    private var nodes: [RaftNode<MemoryStorage>] = []
    private let storages: [MemoryStorage]
    private var queue: [Message] = []
    private var commits = 0

    init() {
        let voters: [NodeID] = [1, 2, 3]
        let boot = RaftNode<MemoryStorage>.bootstrap(voters: voters)
        storages = voters.map { _ in MemoryStorage() }
        for (i, id) in voters.enumerated() {
            storages[i].append(boot.entries)
            storages[i].setHardState(boot.hardState)
            var config = RaftConfig(id: id)
            config.maxSizePerMessage = 4 << 20
            do {
                nodes.append(try RaftNode(config: config, storage: storages[i]))
            } catch {
                fatalError("cannot create node \(id): \(error)")
            }
        }
        pump()
        nodes[0].campaign()
        pump()
        precondition(nodes[0].role == .leader, "node 1 did not win")
    }

    var leaderCommit: UInt64 { nodes[0].commitIndex }

    /// Proposes `payloads` as one batch and runs the cluster until all commit.
    func commit(_ payloads: [[UInt8]]) {
        guard let (first, _) = try? nodes[0].propose(batch: payloads) else { fatalError("proposal refused") }
        let last = first + UInt64(payloads.count) - 1
        while nodes[0].commitIndex < last { pump() }
        commits += 1
        if commits % 64 == 0 { compact() }
    }

    /// Persists, sends, applies and advances every Ready until the cluster is idle.
    private func pump() {
        var busy = true
        while busy {
            busy = false
            for i in nodes.indices where nodes[i].hasReady {
                busy = true
                let ready = nodes[i].ready()
                queue.append(contentsOf: ready.messages)
                if let snapshot = ready.snapshot { storages[i].applySnapshot(snapshot) }
                storages[i].append(ready.entries)
                if let hardState = ready.hardState { storages[i].setHardState(hardState) }
                queue.append(contentsOf: ready.messagesAfterPersist)
                nodes[i].advance(ready)
            }
            if !queue.isEmpty {
                busy = true
                let messages = queue
                queue.removeAll(keepingCapacity: true)
                for message in messages { nodes[Int(message.to) - 1].step(message) }
            }
        }
    }

    /// Keeps memory flat over long runs, as a server's periodic snapshots would.
    private func compact() {
        for i in nodes.indices {
            let applied = nodes[i].appliedIndex
            try? storages[i].createSnapshot(index: applied, confState: nodes[i].confState, data: [])
            try? storages[i].compact(upTo: applied)
        }
    }
}
