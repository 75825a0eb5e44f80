import Foundation
import Prometheus
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The standard Prometheus process metrics (`process_*`, named and typed as
/// the Go client exports them for etcd), read from `/proc/self` when scraped.
/// `etcdctl check datascale` measures a member by its
/// `process_resident_memory_bytes`. Where `/proc` is missing (not Linux) the
/// values stay 0.
final class ProcessMetrics: Sendable {
    private let residentMemory: Gauge
    private let virtualMemory: Gauge
    private let cpuSeconds: Counter
    private let openFDs: Gauge
    private let maxFDs: Gauge
    private let startTime: Gauge
    /// CPU seconds already added to `cpuSeconds` (a counter only grows).
    private let cpuReported = Mutex<Double>(0)

    init(registry: PrometheusCollectorRegistry) {
        let describe = ServerMetrics.describe
        residentMemory = registry.makeGauge(descriptor: describe("process_resident_memory_bytes", "Resident memory size in bytes."))
        virtualMemory = registry.makeGauge(descriptor: describe("process_virtual_memory_bytes", "Virtual memory size in bytes."))
        cpuSeconds = registry.makeCounter(descriptor: describe("process_cpu_seconds_total", "Total user and system CPU time spent in seconds."))
        openFDs = registry.makeGauge(descriptor: describe("process_open_fds", "Number of open file descriptors."))
        maxFDs = registry.makeGauge(descriptor: describe("process_max_fds", "Maximum number of open file descriptors."))
        startTime = registry.makeGauge(
            descriptor: describe("process_start_time_seconds", "Start time of the process since unix epoch in seconds."))
    }

    /// Reads the process's current figures into the metrics.
    func update() {
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8), let nameEnd = stat.lastIndex(of: ")") {
            // After "pid (name)": field 3 (state) first, so field n is at n - 3.
            let fields = stat[stat.index(after: nameEnd)...].split(separator: " ")
            func field(_ n: Int) -> Double? { n - 3 < fields.count ? Double(fields[n - 3]) : nil }
            let ticks = Double(max(sysconf(Int32(_SC_CLK_TCK)), 1))
            if let user = field(14), let system = field(15) {
                let total = (user + system) / ticks
                let delta = cpuReported.withLock { reported -> Double in
                    defer { reported = max(reported, total) }
                    return total - reported
                }
                if delta > 0 { cpuSeconds.increment(by: delta) }
            }
            if let started = field(22), let boot = Self.bootTime { startTime.set(to: boot + started / ticks) }
            if let bytes = field(23) { virtualMemory.set(to: bytes) }
            if let pages = field(24) { residentMemory.set(to: pages * Double(max(sysconf(Int32(_SC_PAGESIZE)), 1))) }
        }
        if let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") { openFDs.set(to: Double(fds.count)) }
        var limit = rlimit()
        if getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 { maxFDs.set(to: Double(limit.rlim_cur)) }
    }

    /// When the machine booted (seconds since the epoch), from /proc/stat.
    private static let bootTime: Double? = {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        return stat.split(separator: "\n").first { $0.hasPrefix("btime ") }.flatMap { Double($0.dropFirst(6)) }
    }()
}

#if os(Linux)
private let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
#else
private let RLIMIT_NOFILE_VALUE = RLIMIT_NOFILE
#endif
