import Foundation

/// The result of a benchmark run in the shape etcd's `tools/benchmark` prints
/// (its `pkg/report`): a summary, a response-time histogram, the latency
/// distribution, and the errors. Pure: the run's measurements go in, text
/// comes out, so two tools' reports can be compared line by line.
///
/// As in etcd, only successful requests have latencies; `Requests/sec` is
/// successes over the run's wall time; errors are counted by their text.
public struct LatencyReport: Sendable {
    /// Latencies of successful requests, in seconds, sorted ascending.
    public let latencies: [Double]
    /// Error text → how many requests failed with it.
    public let errors: [String: Int]
    /// Wall time of the run.
    public let total: Duration

    public init(latencies: [Double], errors: [String: Int], total: Duration) {
        self.latencies = latencies.sorted()
        self.errors = errors
        self.total = total
    }

    public var totalSeconds: Double {
        Double(total.components.seconds) + Double(total.components.attoseconds) / 1e18
    }

    public var fastest: Double { latencies.first ?? 0 }
    public var slowest: Double { latencies.last ?? 0 }

    public var average: Double {
        latencies.isEmpty ? 0 : latencies.reduce(0, +) / Double(latencies.count)
    }

    /// Population standard deviation, as etcd computes it.
    public var stddev: Double {
        guard !latencies.isEmpty else { return 0 }
        let mean = average
        let squares = latencies.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        return (squares / Double(latencies.count)).squareRoot()
    }

    public var requestsPerSecond: Double {
        totalSeconds > 0 ? Double(latencies.count) / totalSeconds : 0
    }

    public var errorCount: Int { errors.values.reduce(0, +) }

    /// The percentiles etcd prints.
    public static let percentileLevels: [Double] = [10, 25, 50, 75, 90, 95, 99, 99.9]

    /// The latency at percentile `p` (0–100) as etcd 3.4's `pkg/report`
    /// picks it: the sorted sample at the first index `i` with
    /// `i × 100 / n ≥ p`; 0 when there is none (etcd then prints no line,
    /// e.g. 99.9% of fewer than 1,000 samples) or no samples at all.
    public func percentile(_ p: Double) -> Double {
        let n = latencies.count
        guard n > 0 else { return 0 }
        // As Go computes it, `float64(i) * 100.0 / float64(n)`, rounding included.
        func at(_ i: Int) -> Double { Double(i) * 100 / Double(n) }
        var i = max(0, Int((p * Double(n) / 100).rounded(.up)))
        while i > 0 && at(i - 1) >= p { i -= 1 }
        while i < n && at(i) < p { i += 1 }
        return i < n ? latencies[i] : 0
    }

    /// etcd's histogram: ten equal buckets from fastest to slowest (plus one at
    /// the slowest); each count is of the latencies up to that bucket's mark and
    /// above the previous one.
    public func histogram() -> [(mark: Double, count: Int)] {
        let buckets = 10
        let width = (slowest - fastest) / Double(buckets)
        var marks = (0..<buckets).map { fastest + width * Double($0) }
        marks.append(slowest)
        var counts = [Int](repeating: 0, count: marks.count)
        var bucket = 0
        var i = 0
        while i < latencies.count {
            if latencies[i] <= marks[bucket] {
                counts[bucket] += 1
                i += 1
            } else if bucket < marks.count - 1 {
                bucket += 1
            } else {
                // Only rounding can leave a latency above the last mark.
                counts[bucket] += 1
                i += 1
            }
        }
        return zip(marks, counts).map { (mark: $0, count: $1) }
    }

    /// The report as etcd prints it (precision `%4.4f`), then the errors: how
    /// many, and the `maxDistinctErrors` most frequent texts.
    public func render(maxDistinctErrors: Int = 5) -> String {
        var out = ""
        if !latencies.isEmpty {
            out += "\nSummary:\n"
            out += "  Total:\t\(Self.seconds(totalSeconds)).\n"
            out += "  Slowest:\t\(Self.seconds(slowest)).\n"
            out += "  Fastest:\t\(Self.seconds(fastest)).\n"
            out += "  Average:\t\(Self.seconds(average)).\n"
            out += "  Stddev:\t\(Self.seconds(stddev)).\n"
            out += "  Requests/sec:\t\(String(format: "%4.4f", requestsPerSecond))\n"
            out += "\nResponse time histogram:\n"
            let rows = histogram()
            let most = rows.map(\.count).max() ?? 0
            for row in rows {
                let bar = most > 0 ? String(repeating: "∎", count: row.count * 40 / most) : ""
                out += "  \(String(format: "%4.4f", row.mark)) [\(row.count)]\t|\(bar)\n"
            }
            out += "\nLatency distribution:\n"
            for level in Self.percentileLevels {
                let value = percentile(level)
                if value > 0 {
                    out += "  \(Self.label(level))% in \(String(format: "%4.4f", value)) secs.\n"
                }
            }
        } else {
            out += "\nSummary:\n  Total:\t\(Self.seconds(totalSeconds)).\n  No request succeeded.\n"
        }
        if errorCount > 0 {
            out += "\nError distribution (\(errorCount) errors, \(errors.count) distinct):\n"
            let ranked = errors.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            for (text, count) in ranked.prefix(maxDistinctErrors) {
                out += "  [\(count)]\t\(text)\n"
            }
            if ranked.count > maxDistinctErrors {
                out += "  … and \(ranked.count - maxDistinctErrors) more distinct errors\n"
            }
        }
        return out
    }

    private static func seconds(_ value: Double) -> String { String(format: "%4.4f secs", value) }

    /// Go's `%v` of a percentile level: `10`, `99.9`.
    static func label(_ level: Double) -> String {
        level == level.rounded() ? String(Int(level)) : String(level)
    }
}
