import Benchmark
import Glibc
import Raft
import RaftStorage

// Run from Benchmarks/: `swift package benchmark` (see BENCHMARKS.md).
// Each iteration commits a fixed number of entries or writes a fixed number of
// records, so entries/s = iterations/s × the count in the benchmark's name.

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        maxDuration: .seconds(5), maxIterations: 100_000)

    // MARK: Raft core, in memory

    for batch in [100, 1_000] {
        Benchmark("raft 3-node commit, \(batch) entries of 100 B per proposal") { benchmark in
            let cluster = MemoryCluster()
            let payloads = (0..<batch).map { _ in [UInt8](repeating: 7, count: 100) }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                cluster.commit(payloads)
            }
            benchmark.stopMeasurement()
            precondition(cluster.leaderCommit > UInt64(batch), "nothing committed")
        }
    }

    // MARK: Write-ahead log

    for size in [100, 1_024] {
        Benchmark("wal \(size) B, fdatasync per record (×100 records)") { benchmark in
            try walBenchmark(benchmark, recordSize: size, syncEvery: 1)
        }
        Benchmark("wal \(size) B, one fdatasync per 100 records (×100 records)") { benchmark in
            try walBenchmark(benchmark, recordSize: size, syncEvery: 100)
        }
    }

    Benchmark("wal 100 B, append only, no fdatasync (×100 records)") { benchmark in
        try walBenchmark(benchmark, recordSize: 100, syncEvery: .max)
    }

    Benchmark("disk: 100 writes of 128 B + one fdatasync (×100), no WAL") { benchmark in
        let path = TemporaryWAL.scratchDirectory() + "/raw-group"
        let fd = open(path, O_CREAT | O_WRONLY | O_APPEND, 0o644)
        precondition(fd >= 0, "cannot open \(path)")
        defer { close(fd); unlink(path) }
        let record = [UInt8](repeating: 1, count: 128)
        benchmark.startMeasurement()
        defer { benchmark.stopMeasurement() }
        for _ in benchmark.scaledIterations {
            for _ in 0..<100 {
                _ = record.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            }
            fdatasync(fd)
        }
    }

    Benchmark("disk: write 256 B + fdatasync (×100), no WAL") { benchmark in
        let path = TemporaryWAL.scratchDirectory() + "/raw"
        let fd = open(path, O_CREAT | O_WRONLY | O_APPEND, 0o644)
        precondition(fd >= 0, "cannot open \(path)")
        defer { close(fd); unlink(path) }
        let record = [UInt8](repeating: 1, count: 256)
        benchmark.startMeasurement()
        defer { benchmark.stopMeasurement() }
        for _ in benchmark.scaledIterations {
            for _ in 0..<100 {
                _ = record.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                fdatasync(fd)
            }
        }
    }
}

/// Appends 100 records per iteration, with one fdatasync every `syncEvery`.
func walBenchmark(_ benchmark: Benchmark, recordSize: Int, syncEvery: Int) throws {
    let wal = try TemporaryWAL()
    let entries = TemporaryWAL.entries(count: 100, size: recordSize)
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
        for (i, entry) in entries.enumerated() {
            try wal.storage.append(hardState: nil, entries: [wal.next(entry)])
            if (i + 1) % syncEvery == 0 { try wal.storage.sync() }
        }
    }
    benchmark.stopMeasurement()
}
