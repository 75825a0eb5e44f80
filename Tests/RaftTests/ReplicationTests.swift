import Raft
import RaftSimulation
import Testing

/// Log replication (§5.3) with pipelining and batching (thesis §10.2).
@Suite struct ReplicationTests {
    /// Pitfall 2: a stale or reordered AppendEntries never truncates entries the
    /// follower already matched.
    @Test func staleAppendDoesNotTruncate() throws {
        let cluster = try Cluster(voters: 3) { $0.maxSizePerMessage = 1 }
        cluster.elect(1)
        for i in 0..<6 { _ = try cluster.propose(1, "e\(i)") }
        let toTwo = cluster.take { $0.to == 2 && $0.kind == .append && !$0.entries.isEmpty }
        #expect(toTwo.count >= 2)
        // Deliver in order, then replay the first (stale, shorter) one.
        for message in toTwo { cluster.deliver(message) }
        let last = cluster.node(2).lastIndex
        cluster.deliver(toTwo[0])
        #expect(cluster.node(2).lastIndex == last)
        cluster.stabilize()
        #expect(cluster.appliedData(2).count == 6)
        #expect(cluster.oracle.violations.isEmpty)
    }

    @Test func reorderedAppendsStillConverge() throws {
        let cluster = try Cluster(voters: 3) { $0.maxSizePerMessage = 1 }
        cluster.elect(1)
        for i in 0..<8 { _ = try cluster.propose(1, "e\(i)") }
        let toThree = cluster.take { $0.to == 3 && $0.kind == .append }
        for message in toThree.reversed() { cluster.deliver(message) }
        cluster.tickAll(times: 3)
        #expect(cluster.appliedData(3).count == 8)
        #expect(cluster.oracle.violations.isEmpty)
    }

    /// The in-flight window bounds what a leader streams to a silent follower.
    @Test func pipeliningWindowIsBounded() throws {
        let cluster = try Cluster(voters: 3) { config in
            config.maxInflightMessages = 3
            config.maxSizePerMessage = 1
        }
        cluster.elect(1)
        cluster.cut.insert(.init(from: 2, to: 1))  // 2's acknowledgements are lost
        let before = cluster.sent.count
        for i in 0..<20 { _ = try cluster.propose(1, "e\(i)") }
        cluster.stabilize()
        let appendsToTwo = cluster.sent[before...].filter { $0.to == 2 && $0.kind == .append && !$0.entries.isEmpty }
        #expect(appendsToTwo.count == 3, "window of 3 messages, got \(appendsToTwo.count)")
        // Node 3 acknowledges, so it receives everything.
        #expect(cluster.appliedData(3).count == 20)
        cluster.healAll()
        cluster.tickAll(times: 3)
        #expect(cluster.appliedData(2).count == 20)
    }

    /// Many proposals between two Readys become one message per follower, and a
    /// message holds at most maxSizePerMessage bytes (unless one entry exceeds it).
    @Test func proposalsAreBatchedByBytes() throws {
        let cluster = try Cluster(voters: 3) { $0.maxSizePerMessage = 200 }
        cluster.elect(1)
        let before = cluster.sent.count
        let payload = String(repeating: "x", count: 40)
        cluster.on(1) { node in
            for _ in 0..<12 { _ = try? node.propose(bytes(payload)) }
        }
        let appends = cluster.sent[before...].filter { $0.kind == .append && $0.to == 2 && !$0.entries.isEmpty }
        #expect(!appends.isEmpty)
        for message in appends {
            #expect(message.entries.count == 1 || message.entries.byteSize <= 200)
        }
        #expect(appends.count < 12, "entries were batched (\(appends.count) messages for 12 entries)")
        cluster.stabilize()
        #expect(cluster.appliedData(2).count == 12)
    }

    /// A follower with a long divergent tail from an old term is brought in line
    /// in a few round trips, not one per entry (§5.3's optimisation).
    @Test func conflictHintsSkipWholeTerms() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.isolate(1)
        for i in 0..<50 { _ = try cluster.propose(1, "lost\(i)") }  // never committed
        cluster.stabilize()
        let leader = try #require(cluster.tickUntilAnyLeader(among: [2, 3]))
        for i in 0..<3 { _ = try cluster.propose(leader, "kept\(i)") }
        cluster.stabilize()
        cluster.healAll()
        let before = cluster.sent.count
        cluster.tickAll(times: 4)
        let rejections = cluster.sent[before...].filter { $0.from == 1 && $0.kind == .appendResponse && $0.reject }
        #expect(rejections.count <= 2, "took \(rejections.count) rejections")
        #expect(cluster.appliedData(1).suffix(3) == ["kept0", "kept1", "kept2"].map(bytes))
        #expect(!cluster.appliedData(1).contains(bytes("lost0")))
        #expect(cluster.oracle.violations.isEmpty)
    }
}
