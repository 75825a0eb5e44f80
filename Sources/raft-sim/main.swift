import ArgumentParser
import Dispatch
import Raft
import RaftSimulation
import Synchronization

/// Runs seeded Raft cluster simulations and reports safety/liveness violations.
@main
struct RaftSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raft-sim",
        abstract: "Deterministic simulation of Ensemble's Raft core under injected faults.",
        discussion: """
            Each seed picks a fault mix (drops, delays, duplicates, partitions, crashes that \
            lose unsynced writes, membership changes, leader transfers, snapshots) and runs a \
            cluster under client load, checking Raft's safety properties after every step and \
            liveness after the faults heal. The last line is `seeds: N, violations: V`.
            """)

    @Option(help: "Number of seeds to run.")
    var seeds: Int = 100

    @Option(help: "First seed.")
    var start: UInt64 = 1

    @Option(help: "Initial voters; by default seeds cycle through 3, 5 and 7.")
    var nodes: Int?

    @Option(help: "Simulated milliseconds of faults and load per seed.")
    var faultMs: Int = 3_000

    @Option(help: "Simulated milliseconds after healing to re-elect, commit and converge.")
    var livenessMs: Int = 3_000

    @Flag(help: "Long soak: 30 simulated seconds of faults per seed.")
    var soak = false

    @Flag(help: "Print every event (use with one seed).")
    var trace = false

    @Option(help: "Break a Raft rule on purpose to show the checks catch it: grant-every-vote or commit-previous-term.")
    var breakRule: [String] = []

    @Option(help: "Parallel workers (default: 2, the cores of the machines this runs on).")
    var jobs: Int?

    mutating func run() throws {
        let seeds = self.seeds
        let start = self.start
        let fixedNodes = nodes
        let faultMs = soak ? max(self.faultMs, 30_000) : self.faultMs
        let livenessMs = self.livenessMs
        let trace = self.trace
        var broken: BrokenRules = []
        for rule in breakRule {
            switch rule {
            case "grant-every-vote": broken.insert(.grantEveryVote)
            case "commit-previous-term": broken.insert(.commitPreviousTermByCounting)
            default: throw ValidationError("unknown rule '\(rule)'; use grant-every-vote or commit-previous-term")
            }
        }
        let brokenRules = broken
        let breakFlags = breakRule.map { " --break-rule \($0)" }.joined()
        let workers = max(1, min(jobs ?? 2, seeds))
        let state = Mutex(Progress())
        print("raft-sim: \(seeds) seeds from \(start), \(fixedNodes.map { "\($0) nodes" } ?? "3/5/7 nodes"), \(faultMs)ms faults + \(livenessMs)ms liveness, \(workers) workers")
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var i = worker
            while i < seeds {
                let seed = start + UInt64(i)
                var options = SimulationOptions(seed: seed)
                options.nodes = fixedNodes ?? [3, 5, 7][Int(seed % 3)]
                options.faultMilliseconds = faultMs
                options.livenessMilliseconds = livenessMs
                options.trace = trace
                options.brokenRules = brokenRules
                let result: SimulationResult
                do {
                    result = try Simulation(options: options).run()
                } catch {
                    print("seed \(seed): could not start: \(error)")
                    i += workers
                    continue
                }
                state.withLock { progress in
                    progress.record(result)
                    if !result.violations.isEmpty {
                        print("FAIL seed \(seed) (\(result.nodes) nodes): \(result.violations[0])")
                        print("  faults: \(result.profile)")
                        print("  replay: swift run -c release raft-sim --seeds 1 --start \(seed) --nodes \(result.nodes) --fault-ms \(faultMs) --liveness-ms \(livenessMs)\(breakFlags) --trace")
                    }
                    if progress.done % 100 == 0 || progress.done == seeds {
                        print("  \(progress.done)/\(seeds) seeds, \(progress.violations) violations, \(progress.committed) entries committed, \(progress.acked) acknowledged, \(progress.reads) reads, \(progress.elections) elections, \(progress.snapshots) snapshots installed, \(progress.confChanges) membership changes, \(progress.crashes) crashes (\(progress.commitsLost) losing an unsynced commit index)")
                    }
                }
                i += workers
            }
        }
        let summary = state.withLock { $0 }
        print("seeds: \(summary.done), violations: \(summary.violations)")
        if summary.violations > 0 { throw ExitCode.failure }
    }
}

struct Progress: Sendable {
    var done = 0
    var violations = 0
    var committed: UInt64 = 0
    var acked = 0
    var reads = 0
    var elections = 0
    var snapshots = 0
    var confChanges = 0
    var crashes = 0
    var commitsLost = 0

    mutating func record(_ result: SimulationResult) {
        done += 1
        if !result.violations.isEmpty { violations += 1 }
        committed += result.committed
        acked += result.acknowledged
        reads += result.reads
        elections += result.elections
        snapshots += result.snapshotsInstalled
        confChanges += result.confChanges
        crashes += result.crashes
        commitsLost += result.commitsLost
    }
}
