import Raft
import RaftSimulation
import Testing

/// Pitfall 3 — Figure 8 of the Raft paper (§5.4.2): a leader must not commit an
/// entry of an earlier term by counting replicas, or a later leader can overwrite
/// it. The scenario is replayed step by step; with the rule deliberately broken
/// the oracle catches the overwritten commit, which proves it can fail.
@Suite struct Figure8Tests {
    /// Runs Figure 8 (a)–(d) on five members and returns the oracle's verdict.
    func runFigure8(brokenRules: BrokenRules) throws -> (cluster: Cluster, committedOldEntry: Bool) {
        let cluster = try Cluster(voters: 5) { config in
            // The paper's protocol, without the extensions that would make the
            // scripted elections below need extra ticks.
            config.preVote = false
            config.checkQuorum = false
            config.maxSizePerMessage = 1  // one entry per AppendEntries
            config.brokenRules = brokenRules
        }
        // (a) S1 leads term 2 and replicates index 7 only to S2.
        cluster.elect(1)
        cluster.dropIf = { $0.from == 1 && $0.to != 2 && $0.kind == .append }
        let (index, oldTerm) = try cluster.propose(1, "figure8")
        cluster.stabilize()
        #expect(cluster.node(2).term(at: index) == oldTerm)

        // (b) S1 crashes; S5 wins term 3 with S3 and S4 and appends index 7 locally only.
        cluster.crash(1)
        cluster.dropIf = { $0.from == 5 && $0.kind == .append }
        cluster.elect(5)
        #expect(cluster.node(5).role == .leader)
        #expect(cluster.node(5).lastIndex == index)
        cluster.crash(5)
        cluster.inbox.removeAll()

        // (c) S1 restarts and wins term 4; it gets index 7 (term 2) onto S3, so a
        // majority {S1, S2, S3} holds it, but not its own term-4 no-op.
        try cluster.restart(1)
        cluster.dropIf = { [weak cluster] m in
            guard m.kind == .append, m.from == 1 else { return false }
            if m.to == 4 { return true }
            // S3 may take index 7, but nothing after it.
            let s3HasIt = (cluster?.members[3]?.raft?.lastIndex ?? 0) >= index
            return m.to == 3 && s3HasIt && m.entries.contains { $0.index > index }
        }
        for _ in 0..<60 where cluster.node(1).role != .leader {
            cluster.tick(1)
            cluster.stabilize()
        }
        #expect(cluster.node(1).role == .leader)
        #expect(cluster.node(3).term(at: index) == oldTerm)
        let committedOldEntry = cluster.node(1).commitIndex >= index

        // (d) S1 crashes; S5 restarts and wins with S3 and S4 (its last term, 3,
        // beats their 2), overwriting index 7 everywhere.
        cluster.crash(1)
        cluster.dropIf = nil
        cluster.inbox.removeAll()
        try cluster.restart(5)
        for _ in 0..<60 where cluster.node(5).role != .leader {
            cluster.tick(5)
            cluster.stabilize()
        }
        cluster.stabilize()
        #expect(cluster.node(5).role == .leader)
        return (cluster, committedOldEntry)
    }

    @Test func previousTermEntryIsNotCommittedByCounting() throws {
        let (cluster, committedOldEntry) = try runFigure8(brokenRules: [])
        #expect(!committedOldEntry, "index 7 from term 2 must not commit in term 4 by counting")
        #expect(cluster.oracle.violations.isEmpty, "\(cluster.oracle.violations)")
    }

    @Test func brokenCommitRuleIsCaughtByTheOracle() throws {
        let (cluster, committedOldEntry) = try runFigure8(brokenRules: .commitPreviousTermByCounting)
        #expect(committedOldEntry)
        #expect(cluster.oracle.violations.contains { $0.contains("state machine safety") || $0.contains("leader completeness") },
                "\(cluster.oracle.violations)")
    }
}
