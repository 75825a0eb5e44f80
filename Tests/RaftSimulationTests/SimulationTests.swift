import Raft
import RaftSimulation
import Testing

/// The randomized simulation, run on a few seeds per cluster size here; CI runs
/// thousands through `raft-sim` in release mode.
@Suite struct SimulationTests {
    func run(seed: UInt64, nodes: Int, broken: BrokenRules = [], faultMs: Int = 2_000) throws -> SimulationResult {
        var options = SimulationOptions(seed: seed)
        options.nodes = nodes
        options.faultMilliseconds = faultMs
        options.brokenRules = broken
        return try Simulation(options: options).run()
    }

    @Test(arguments: [3, 5, 7])
    func seedsPassForClusterSize(nodes: Int) throws {
        for seed in UInt64(1)...8 {
            let result = try run(seed: seed, nodes: nodes)
            #expect(result.violations.isEmpty, "seed \(seed): \(result.violations)")
            #expect(result.acknowledged > 0, "seed \(seed) acknowledged nothing")
        }
    }

    /// A seed replays exactly: the basis of "a failing seed prints the command
    /// that replays it".
    @Test func runsAreDeterministic() throws {
        let a = try run(seed: 77, nodes: 5)
        let b = try run(seed: 77, nodes: 5)
        #expect(a.committed == b.committed)
        #expect(a.acknowledged == b.acknowledged)
        #expect(a.elections == b.elections)
        #expect(a.crashes == b.crashes)
        #expect(a.reads == b.reads)
    }

    /// The harness must be able to fail: with votes granted twice per term the
    /// oracle finds two leaders in one term within a few seeds.
    @Test func doubleVotingIsCaught() throws {
        var caught: [String] = []
        for seed in UInt64(1)...60 where caught.isEmpty {
            caught = try run(seed: seed, nodes: 5, broken: .grantEveryVote).violations
        }
        #expect(caught.contains { $0.contains("election safety") || $0.contains("safety") }, "\(caught)")
    }
}

@Suite struct OracleTests {
    @Test func hashChainSeparatesHistories() {
        var a = SimStateMachine()
        var b = SimStateMachine()
        a.apply(Entry(term: 1, index: 1, data: [1]))
        b.apply(Entry(term: 1, index: 1, data: [2]))
        #expect(a.hash != b.hash)
        let restored = SimStateMachine(snapshotData: a.snapshotData())
        #expect(restored == a)
    }
}
