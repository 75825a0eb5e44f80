import Raft

/// What one simulation run does. Everything random derives from `seed`, so the
/// same options replay the same run.
public struct SimulationOptions: Sendable {
    public var seed: UInt64
    /// Initial voters (3, 5 or 7 in CI).
    public var nodes: Int = 3
    /// Milliseconds of simulated time with faults and client load.
    public var faultMilliseconds: Int = 3_000
    /// Milliseconds after healing within which the cluster must elect a leader,
    /// commit new proposals and converge (liveness bound).
    public var livenessMilliseconds: Int = 3_000
    /// Print every event.
    public var trace: Bool = false
    /// Rules to break on purpose (harness self-test).
    public var brokenRules: BrokenRules = []

    public init(seed: UInt64) { self.seed = seed }
}

/// Fault and load intensities for one run, drawn from the seed so that different
/// seeds explore different mixes (TigerBeetle's VOPR does the same).
struct FaultProfile: CustomStringConvertible {
    var dropRate: Double
    var duplicateRate: Double
    var maxDelay: Int
    var partitionRate: Double
    var crashRate: Double
    var crashInReadyRate: Double
    var confChangeRate: Double
    var transferRate: Double
    var proposeRate: Double
    var batchRate: Double
    var readRate: Double
    var snapshotEvery: UInt64
    var snapshotKeep: UInt64

    init(random: inout SplitMix64) {
        func pick<T>(_ values: [T]) -> T { values[Int(random.next() % UInt64(values.count))] }
        dropRate = pick([0, 0.01, 0.05, 0.15])
        duplicateRate = pick([0, 0.01, 0.05])
        maxDelay = pick([2, 10, 30, 60])
        partitionRate = pick([0, 0.0005, 0.002])
        crashRate = pick([0, 0.0003, 0.001])
        crashInReadyRate = pick([0, 0.001, 0.005])
        confChangeRate = pick([0, 0.0005, 0.002])
        transferRate = pick([0, 0.0005, 0.002])
        proposeRate = pick([0.05, 0.2, 0.6])
        batchRate = pick([0, 0.1])
        readRate = pick([0.01, 0.05])
        snapshotEvery = pick([8, 40, 400])
        snapshotKeep = pick([0, 2, 20])
    }

    var description: String {
        "drop=\(dropRate) dup=\(duplicateRate) delay<=\(maxDelay)ms partition=\(partitionRate) crash=\(crashRate) "
            + "crashInReady=\(crashInReadyRate) confChange=\(confChangeRate) transfer=\(transferRate) "
            + "propose=\(proposeRate) read=\(readRate) snapshotEvery=\(snapshotEvery) keep=\(snapshotKeep)"
    }
}

/// What a run found.
public struct SimulationResult: Sendable {
    public var seed: UInt64
    public var nodes: Int
    public var violations: [String]
    public var committed: UInt64
    public var acknowledged: Int
    public var reads: Int
    public var elections: Int
    public var snapshotsInstalled: Int
    public var confChanges: Int
    public var crashes: Int
    /// Restarts that came back with a lower commit index than before the crash
    /// (an unsynced commit-only hard state lost).
    public var commitsLost: Int
    public var profile: String
}
