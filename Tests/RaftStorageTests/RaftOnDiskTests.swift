import Foundation
import Raft
import Testing
@testable import RaftStorage

/// Raft driven over DiskStorage on real files: what the node runtime will do,
/// minus the network. Proves DiskStorage is the storage interface Raft reads,
/// and that a whole cluster restarted from disk comes back with everything it
/// had committed.
final class DiskCluster {
    let directories: [String]
    var storages: [DiskStorage?]
    var nodes: [RaftNode<DiskStorage>?]
    /// Normal entries each member applied since it last started.
    var applied: [[Entry]]
    var queue: [Message] = []

    init(_ dir: TempDir, voters: Int) throws {
        let ids = (1...voters).map { NodeID($0) }
        directories = ids.map { dir.sub("n\($0)") }
        storages = []
        nodes = []
        applied = Array(repeating: [], count: voters)
        let boot = RaftNode<DiskStorage>.bootstrap(voters: ids)
        for path in directories {
            let storage = try DiskStorage.open(directory: path)
            try storage.append(hardState: boot.hardState, entries: boot.entries)
            try storage.sync()
            storages.append(storage)
            nodes.append(nil)
        }
        for i in ids.indices { try start(i) }
    }

    func start(_ i: Int) throws {
        let storage = try storages[i] ?? DiskStorage.open(directory: directories[i])
        storages[i] = storage
        var config = RaftConfig(id: NodeID(i + 1))
        config.applied = storage.snapshotMetadata.index
        nodes[i] = try RaftNode(config: config, storage: storage)
        applied[i] = []
    }

    /// Drops the member without closing anything: only synced data survives.
    func crash(_ i: Int) {
        nodes[i] = nil
        storages[i] = nil
    }

    func pump() throws {
        var busy = true
        while busy {
            busy = false
            for i in nodes.indices {
                guard let storage = storages[i] else { continue }
                while nodes[i]?.hasReady == true {
                    busy = true
                    guard let ready = nodes[i]?.ready() else { break }
                    queue += ready.messages
                    try storage.append(hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot)
                    try storage.sync()
                    queue += ready.messagesAfterPersist
                    applied[i] += ready.committedEntries.filter { $0.kind == .normal && !$0.data.isEmpty }
                    nodes[i]?.advance(ready)
                }
            }
            let messages = queue
            queue.removeAll()
            for message in messages {
                let target = Int(message.to) - 1
                guard nodes.indices.contains(target), nodes[target] != nil else {
                    if message.kind == .snapshot { nodes[Int(message.from) - 1]?.reportSnapshot(to: message.to, succeeded: false) }
                    continue
                }
                busy = true
                nodes[target]?.step(message)
                if message.kind == .snapshot { nodes[Int(message.from) - 1]?.reportSnapshot(to: message.to, succeeded: true) }
            }
        }
    }

    func elect(_ i: Int) throws {
        nodes[i]?.campaign()
        try pump()
    }

    func propose(_ i: Int, _ text: String) throws {
        _ = try nodes[i]?.propose(Array(text.utf8))
        try pump()
    }

    func tickAll(_ times: Int) throws {
        for _ in 0..<times {
            for i in nodes.indices { nodes[i]?.tick() }
            try pump()
        }
    }
}

@Suite struct RaftOnDiskTests {
    @Test func wholeClusterRestartKeepsEveryCommittedEntry() throws {
        try withTempDir { dir in
            let cluster = try DiskCluster(dir, voters: 3)
            try cluster.pump()
            try cluster.elect(0)
            for i in 0..<30 { try cluster.propose(0, "v\(i)") }
            let commit = try #require(cluster.nodes[0]?.commitIndex)
            for i in 0..<3 { cluster.crash(i) }
            for i in 0..<3 { try cluster.start(i) }
            for i in 0..<3 { #expect((cluster.nodes[i]?.commitIndex ?? 0) >= commit - 1) }
            try cluster.pump()
            try cluster.tickAll(30)
            let leader = try #require(cluster.nodes.firstIndex { $0?.role == .leader })
            try cluster.propose(leader, "after restart")
            try cluster.tickAll(2)
            for i in 0..<3 {
                let texts = cluster.applied[i].map { String(decoding: $0.data, as: UTF8.self) }
                #expect(texts == (0..<30).map { "v\($0)" } + ["after restart"], "member \(i + 1)")
            }
        }
    }

    @Test func followerCatchesUpFromASnapshotOnDisk() throws {
        try withTempDir { dir in
            let cluster = try DiskCluster(dir, voters: 3)
            try cluster.pump()
            try cluster.elect(0)
            cluster.crash(2)
            for i in 0..<20 { try cluster.propose(0, "v\(i)") }
            // The leader snapshots its state and compacts its log.
            let leader = try #require(cluster.nodes[0])
            let storage = try #require(cluster.storages[0])
            let index = leader.appliedIndex
            let term = try #require(leader.term(at: index))
            try storage.saveSnapshot(Snapshot(
                metadata: SnapshotMetadata(index: index, term: term, confState: leader.confState), data: Array("state@\(index)".utf8)))
            try storage.compact(upTo: index)
            #expect(storage.firstIndex == index + 1)
            try cluster.start(2)
            // The leader's storage reads the snapshot back from its file in the
            // background ("temporarily unavailable" until then); Raft tries again.
            for _ in 0..<300 where (cluster.storages[2]?.snapshotMetadata.index ?? 0) < index {
                try cluster.tickAll(1)
                Thread.sleep(forTimeInterval: 0.01)
            }
            let installed = try #require(cluster.storages[2]).readSnapshot()
            #expect(installed.metadata.index == index)
            #expect(installed.data == Array("state@\(index)".utf8))
            // It survives a restart of that member too.
            cluster.crash(2)
            try cluster.start(2)
            #expect(try #require(cluster.storages[2]).snapshotMetadata.index == index)
            try cluster.propose(0, "next")
            try cluster.tickAll(2)
            #expect(cluster.nodes[2]?.commitIndex == cluster.nodes[0]?.commitIndex)
        }
    }
}
