import Foundation

/// etcd's auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`),
/// as a pure policy: fed the time and the current revision, it says when to
/// compact and to which revision. The leader runs it; followers never compact
/// on their own (a compaction goes through the log like any write).
///
/// - `periodic` with a retention period P keeps P of history: every P/10
///   (at most every hour) it compacts to the revision that was current P ago.
/// - `revision` with a retention of N revisions keeps the last N: every
///   5 minutes it compacts to the current revision minus N.
public struct AutoCompactionPolicy: Sendable, Equatable {
    public enum Mode: Sendable, Equatable {
        case periodic(Duration)
        case revision(Int64)
    }

    public let mode: Mode
    /// (time, revision) samples, oldest first (periodic mode).
    private var samples: [(at: Duration, revision: Int64)] = []
    private var lastCheck: Duration?
    private var lastCompacted: Int64 = 0

    public init(mode: Mode) {
        self.mode = mode
    }

    public static func == (a: AutoCompactionPolicy, b: AutoCompactionPolicy) -> Bool { a.mode == b.mode }

    /// Parses etcd's flags: mode `periodic` takes a duration (`1h`, `30m`,
    /// `90s`, or a bare number of hours), mode `revision` a count. An empty or
    /// zero retention disables auto-compaction (nil).
    public static func parse(mode: String, retention: String) throws(ConfigurationError) -> AutoCompactionPolicy? {
        let retention = retention.trimmingCharacters(in: .whitespaces)
        if retention.isEmpty || retention == "0" { return nil }
        switch mode {
        case "periodic":
            guard let period = parseDuration(retention), period > .zero else {
                throw ConfigurationError("--auto-compaction-retention: \(retention) is not a duration (1h, 30m, 90s)")
            }
            return AutoCompactionPolicy(mode: .periodic(period))
        case "revision":
            guard let count = Int64(retention), count > 0 else {
                throw ConfigurationError("--auto-compaction-retention: \(retention) is not a revision count")
            }
            return AutoCompactionPolicy(mode: .revision(count))
        default:
            throw ConfigurationError("--auto-compaction-mode must be periodic or revision")
        }
    }

    /// etcd's retention: a bare number counts hours (`1` is an hour),
    /// anything else is a Go duration (`30m`, `1h30m`).
    public static func parseDuration(_ text: String) -> Duration? {
        if let hours = Double(text) {
            guard hours.isFinite, abs(hours) < 2.5e6 else { return nil }  // Go's limit: ~292 years
            return .milliseconds(Int64(hours * 3_600_000))
        }
        return GoDuration.parse(text)
    }

    /// How often ``observe(now:revision:)`` should be called.
    public var checkInterval: Duration {
        switch mode {
        case let .periodic(period): min(period / 10, .seconds(3600))
        case .revision: .seconds(300)
        }
    }

    /// The revision to compact to now, if any. `now` is any monotonic time.
    public mutating func observe(now: Duration, revision: Int64) -> Int64? {
        switch mode {
        case let .periodic(period):
            samples.append((now, revision))
            // The newest sample at least `period` old is the compaction point.
            guard let index = samples.lastIndex(where: { now - $0.at >= period }) else { return nil }
            let target = samples[index].revision
            samples.removeFirst(index)
            return compact(to: target)
        case let .revision(retain):
            if let lastCheck, now - lastCheck < checkInterval { return nil }
            lastCheck = now
            return compact(to: revision - retain)
        }
    }

    private mutating func compact(to target: Int64) -> Int64? {
        guard target > lastCompacted, target > 1 else { return nil }
        lastCompacted = target
        return target
    }
}
