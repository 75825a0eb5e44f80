import Raft
import RaftSimulation
import Testing

/// Snapshots and log compaction (§7), and the races of pitfall 7.
@Suite struct SnapshotTests {
    func compact(_ cluster: Cluster, _ id: NodeID) {
        cluster.members[id]?.snapshotAndCompact(keep: 0)
    }

    @Test func followerBehindCompactionGetsASnapshot() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.crash(3)
        for i in 0..<20 { _ = try cluster.propose(1, "e\(i)") }
        cluster.stabilize()
        compact(cluster, 1)
        #expect(cluster.node(1).firstIndex > 2)
        try cluster.restart(3)
        cluster.tickAll(times: 3)
        let leaderState = try #require(cluster.members[1]?.stateMachine)
        #expect(cluster.members[3]?.stateMachine == leaderState)
        #expect(cluster.members[3]?.disk.latestSnapshot.metadata.index == cluster.members[1]?.disk.latestSnapshot.metadata.index)
        // And replication continues after it.
        _ = try cluster.propose(1, "after")
        cluster.stabilize()
        #expect(cluster.appliedData(3).last == bytes("after"))
        #expect(cluster.oracle.violations.isEmpty)
    }

    /// A stale AppendEntries that arrives after the follower installed a newer
    /// snapshot must not move it backwards.
    @Test func staleAppendAfterSnapshotIsHarmless() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.cut.insert(.init(from: 1, to: 3))
        _ = try cluster.propose(1, "a")
        cluster.stabilize()
        let stale = Message(kind: .append, from: 1, to: 3, term: cluster.node(1).term,
                            logTerm: cluster.node(1).term(at: 2) ?? 0, index: 2,
                            entries: [], commit: 2)
        for i in 0..<10 { _ = try cluster.propose(1, "e\(i)") }
        cluster.stabilize()
        compact(cluster, 1)
        cluster.healAll()
        cluster.tickAll(times: 3)
        let commit = cluster.node(3).commitIndex
        cluster.deliver(stale)
        cluster.stabilize()
        #expect(cluster.node(3).commitIndex == commit)
        #expect(cluster.node(3).lastIndex >= commit)
        #expect(cluster.oracle.violations.isEmpty)
    }

    /// A crash right after a snapshot was persisted, before the state machine
    /// applied it: the restart recovers the state from the snapshot on disk.
    @Test func crashAfterSavingSnapshotRecovers() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.crash(2)
        for i in 0..<10 { _ = try cluster.propose(1, "e\(i)") }
        cluster.stabilize()
        compact(cluster, 1)
        try cluster.restart(2)
        cluster.tickAll(times: 3)
        let snapshotIndex = cluster.members[2]?.disk.latestSnapshot.metadata.index ?? 0
        #expect(snapshotIndex > 0)
        cluster.crash(2)
        try cluster.restart(2)
        #expect(cluster.members[2]?.stateMachine.appliedIndex == snapshotIndex)
        #expect(cluster.node(2).commitIndex >= snapshotIndex)
        cluster.tickAll(times: 3)
        #expect(cluster.members[2]?.stateMachine == cluster.members[1]?.stateMachine)
        #expect(cluster.oracle.violations.isEmpty)
    }

    @Test func memoryStorageFollowsTheStorageContract() throws {
        let storage = MemoryStorage()
        storage.append((1...5).map { Entry(term: 1, index: $0, data: [UInt8($0)]) })
        #expect(storage.firstIndex == 1 && storage.lastIndex == 5)
        #expect(try storage.term(at: 3) == 1)
        #expect(try storage.entries(2..<5, maxBytes: .max).map(\.index) == [2, 3, 4])
        #expect(try storage.entries(2..<5, maxBytes: 1).count == 1, "at least one entry")
        try storage.createSnapshot(index: 3, confState: ConfState(voters: [1]), data: [9])
        try storage.compact(upTo: 3)
        #expect(storage.firstIndex == 4)
        #expect(throws: StorageError.compacted) { try storage.entries(3..<5, maxBytes: .max) }
        #expect(throws: StorageError.unavailable) { try storage.term(at: 9) }
        #expect(try storage.term(at: 3) == 1)
        storage.append([Entry(term: 2, index: 5)])
        #expect(storage.lastIndex == 5)
        #expect(try storage.term(at: 5) == 2)
    }
}
