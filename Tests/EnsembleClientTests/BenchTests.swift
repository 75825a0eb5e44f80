@testable import EnsembleBench
import Foundation
import Testing

/// The pure parts of `ensemble bench`: keys, rate limit, report, progress, endpoints.
@Suite struct BenchTests {
    /// Go's `binary.PutVarint` (zigzag), as etcd's benchmark writes keys.
    @Test func keysAreZigzagVarintsPaddedWithZeros() {
        #expect(BenchKeys.key(index: 0, size: 8) == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(BenchKeys.key(index: 1, size: 3) == [2, 0, 0])
        #expect(BenchKeys.key(index: 63, size: 2) == [0x7E, 0])
        #expect(BenchKeys.key(index: 64, size: 3) == [0x80, 0x01, 0])
        #expect(BenchKeys.key(index: 1_000_000, size: 4) == [0x80, 0x89, 0x7A, 0])
        #expect(BenchKeys.key(index: -1, size: 1) == [1])
        #expect(BenchKeys.varintLength(63) == 1)
        #expect(BenchKeys.varintLength(64) == 2)
        #expect(BenchKeys.minimumKeySize(keySpaceSize: 1) == 1)
        #expect(BenchKeys.minimumKeySize(keySpaceSize: 65) == 2)
        #expect(BenchKeys.minimumKeySize(keySpaceSize: 100_000) == 3)
    }

    @Test func everyKeyOfTheSpaceIsDistinct() {
        let keys = Set((0..<10_000).map { BenchKeys.key(index: $0, size: 8) })
        #expect(keys.count == 10_000)
    }

    @Test func keyPickerSequentialAndRandom() {
        var random = BenchRandom(seed: 1)
        let sequential = KeyPicker(keySpaceSize: 3, sequential: true)
        #expect((0..<7).map { sequential.index(forRequest: $0, using: &random) } == [0, 1, 2, 0, 1, 2, 0])
        let uniform = KeyPicker(keySpaceSize: 5, sequential: false)
        let drawn = (0..<1_000).map { uniform.index(forRequest: $0, using: &random) }
        #expect(Set(drawn) == Set(0..<5))
    }

    /// Requesters draw unrelated random keys: 100 requesters × 1,000 draws
    /// from 100,000 keys touch about 63,000 (review finding: seeds one
    /// generator step apart made them touch ~1,100).
    @Test func requestersDrawUnrelatedKeys() {
        let picker = KeyPicker(keySpaceSize: 100_000, sequential: false)
        var keys = Set<Int>()
        for k in 0..<100 {
            var random = BenchRandom.forRequester(k, seed: 42)
            for i in 0..<1_000 { keys.insert(picker.index(forRequest: i, using: &random)) }
        }
        #expect(keys.count > 60_000, "\(keys.count) distinct keys")
    }

    @Test func writesRefuseAKeySizeTooSmallForTheKeySpace() {
        let writes = BenchWorkloads.Writes(keySize: 1, valueSize: 8, keys: KeyPicker(keySpaceSize: 1_000, sequential: true))
        #expect(throws: BenchError("--key-size 1 cannot hold 1000 distinct keys; use at least 2")) { try writes.validate() }
    }

    @Test func rateLimiterSpacesStartsAndEarnsNoBurst() {
        var limiter = RateLimiter(perSecond: 100)
        #expect(limiter.reserve(now: .zero) == .zero)
        #expect(limiter.reserve(now: .zero) == .milliseconds(10))
        #expect(limiter.reserve(now: .zero) == .milliseconds(20))
        #expect(limiter.reserve(now: .milliseconds(25)) == .milliseconds(5))
        // Idle for a second: one request at once, then spaced again.
        #expect(limiter.reserve(now: .seconds(2)) == .zero)
        #expect(limiter.reserve(now: .seconds(2)) == .milliseconds(10))
        var unlimited = RateLimiter(perSecond: 0)
        #expect((0..<100).allSatisfy { _ in unlimited.reserve(now: .zero) == .zero })
    }

    @Test func percentilesUseEtcdsRank() {
        let report = LatencyReport(latencies: (1...100).map { Double($0) / 1000 }.shuffled(), errors: [:], total: .seconds(2))
        // etcd 3.4: the first index i with i × 100 / n ≥ p — the 51st, 11th
        // and 100th of 100; none for 99.9 (etcd prints no such line).
        #expect(report.percentile(50) == 0.051)
        #expect(report.percentile(10) == 0.011)
        #expect(report.percentile(99) == 0.100)
        #expect(report.percentile(99.9) == 0)
        #expect(LatencyReport(latencies: [0.5], errors: [:], total: .seconds(1)).percentile(10) == 0)
        let thousand = LatencyReport(latencies: (1...1_000).map { Double($0) }, errors: [:], total: .seconds(1))
        #expect(thousand.percentile(99.9) == 1_000 && thousand.percentile(25) == 251)
        #expect(report.fastest == 0.001 && report.slowest == 0.100)
        #expect(abs(report.average - 0.0505) < 1e-12)
        #expect(report.requestsPerSecond == 50)
        // Population standard deviation of 1…100 ms.
        #expect(abs(report.stddev - 0.028866) < 1e-6)
    }

    @Test func histogramHasElevenMarksAndCountsEverything() {
        let latencies = [0.001, 0.001, 0.002, 0.005, 0.010, 0.011]
        let report = LatencyReport(latencies: latencies, errors: [:], total: .seconds(1))
        let rows = report.histogram()
        #expect(rows.count == 11)
        #expect(rows.first?.mark == 0.001 && rows.last?.mark == 0.011)
        #expect(rows.map(\.count).reduce(0, +) == latencies.count)
        #expect(rows[0].count == 2)
    }

    @Test func reportHasEtcdsShapeAndTheErrors() {
        let report = LatencyReport(
            latencies: [0.001, 0.002, 0.003], errors: ["etcdserver: request timed out": 4, "b": 1, "c": 1], total: .seconds(1))
        let text = report.render(maxDistinctErrors: 2)
        #expect(text.hasPrefix("\nSummary:\n  Total:\t1.0000 secs.\n  Slowest:\t0.0030 secs.\n  Fastest:\t0.0010 secs.\n"))
        #expect(text.contains("  Requests/sec:\t3.0000\n"))
        #expect(text.contains("\nResponse time histogram:\n  0.0010 [1]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎\n"))
        // etcd's lines: 3 samples give 10% (index 1), …, 50% (index 2); none from 75% on.
        #expect(text.contains("\nLatency distribution:\n  10% in 0.0020 secs.\n  25% in 0.0020 secs.\n  50% in 0.0030 secs.\n\n"))
        #expect(text.contains("Error distribution (6 errors, 3 distinct):\n  [4]\tetcdserver: request timed out\n  [1]\tb\n  … and 1 more distinct errors\n"))
    }

    @Test func reportWithoutSuccessesSaysSo() {
        let text = LatencyReport(latencies: [], errors: ["down": 3], total: .seconds(1)).render()
        #expect(text.contains("No request succeeded"))
        #expect(text.contains("[3]\tdown"))
    }

    @Test func progressBarRendersInPlaceFriendlyLines() {
        let bar = ProgressBar(total: 10_000, width: 10)
        #expect(bar.render(done: 0, elapsed: .zero) == "    0 / 10000 [          ]   0.00% 0.0s")
        #expect(bar.render(done: 3_456, elapsed: .milliseconds(1_250)) == " 3456 / 10000 [===>      ]  34.56% 1.3s")
        #expect(bar.render(done: 10_000, elapsed: .seconds(2)) == "10000 / 10000 [==========] 100.00% 2.0s")
    }

    @Test func endpointsParseLikeEtcdctls() throws {
        #expect(try BenchEndpoint.parseList("127.0.0.1:2379, http://10.0.0.2:22379/,[::1]:2379") == [
            BenchEndpoint(host: "127.0.0.1", port: 2379), BenchEndpoint(host: "10.0.0.2", port: 22379),
            BenchEndpoint(host: "::1", port: 2379),
        ])
        #expect(throws: BenchError.self) { try BenchEndpoint.parseList("") }
        #expect(throws: BenchError.self) { try BenchEndpoint.parse("localhost") }
        #expect(throws: BenchError.self) { try BenchEndpoint.parse("host:99999") }
        #expect(try BenchEndpoint.parse("https://h:1") == BenchEndpoint(host: "h", port: 1, tls: true))
        #expect(try BenchEndpoint.parse("http://h:1") == BenchEndpoint(host: "h", port: 1))
    }

    @Test func watchValuesCarryThePutNumber() {
        let value = Data([0, 0, 0, 0, 0, 1, 0, 2, 9, 9])
        #expect(WatchBench.putNumber(value) == 65_538)
        #expect(WatchBench.putNumber(Data([1, 2])) == nil)
    }
}
