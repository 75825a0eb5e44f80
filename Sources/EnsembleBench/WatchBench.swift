import EnsembleAPI
import EnsembleClient
import Foundation
import Synchronization

/// `bench watch`, etcd's `tools/benchmark watch`: `watchedKeyTotal` keys
/// (etcd's keys: `keySize` bytes starting with an index of a key space of
/// `keySpaceSize` as a varint, the indexes in order with `sequentialKeys`,
/// else random), `streams` Watch streams (over the run's connections) of
/// `watchersPerStream` watchers each, watcher `w` on key `w % watchedKeyTotal`
/// (so each key has about watchers / watchedKeyTotal watchers); then `total`
/// puts by the run's requesters at the run's rate, put `i` to key
/// `i % watchedKeyTotal`. Reported: each watcher's creation (its create
/// request to its `created` answer), the puts, and each event's latency from
/// the start of the put that caused it to its arrival at a watcher (etcd's
/// tool times an event from its response's arrival, about 0: only its
/// events/s says anything). The put's number travels in the first 8 bytes of
/// its value.
public struct WatchLoad: Sendable {
    public var streams: Int
    public var watchersPerStream: Int
    /// etcd's `--watched-key-total`: how many keys are watched and put to.
    public var watchedKeyTotal: Int
    public var keySpaceSize: Int
    public var sequentialKeys: Bool
    public var keySize: Int
    /// At least 8: the value carries the put's number.
    public var valueSize: Int
    /// How long after the last put to wait for outstanding events; those still
    /// missing then are counted as errors.
    public var eventTimeout: Duration

    public var watchers: Int { streams * watchersPerStream }

    public init(
        streams: Int, watchersPerStream: Int, watchedKeyTotal: Int = 1, keySpaceSize: Int = 1, sequentialKeys: Bool = false,
        keySize: Int, valueSize: Int, eventTimeout: Duration = .seconds(10)
    ) {
        self.streams = streams
        self.watchersPerStream = watchersPerStream
        self.watchedKeyTotal = watchedKeyTotal
        self.keySpaceSize = keySpaceSize
        self.sequentialKeys = sequentialKeys
        self.keySize = keySize
        self.valueSize = valueSize
        self.eventTimeout = eventTimeout
    }

    public func validate() throws(BenchError) {
        guard streams > 0 else { throw BenchError("--streams must be at least 1") }
        guard watchersPerStream > 0 else { throw BenchError("--watch-per-stream must be at least 1") }
        guard watchedKeyTotal > 0 else { throw BenchError("--watched-key-total must be at least 1") }
        guard keySpaceSize > 0 else { throw BenchError("--key-space-size must be at least 1") }
        guard keySize >= BenchKeys.minimumKeySize(keySpaceSize: keySpaceSize) else {
            throw BenchError("--key-size must be at least \(BenchKeys.minimumKeySize(keySpaceSize: keySpaceSize)) for \(keySpaceSize) keys")
        }
        guard valueSize >= 8 else { throw BenchError("--val-size must be at least 8 (the value carries the put's number)") }
    }

    /// The watched keys, and each stream's watchers' keys (indexes into them).
    public struct Plan: Sendable {
        public var keys: [Data]
        public var watched: [[Int]]
    }

    /// A random plan for this load.
    public func plan() -> Plan {
        var generator = SystemRandomNumberGenerator()
        let (keys, watched) = plan(using: &generator)
        return Plan(keys: keys, watched: watched)
    }

    /// Events `plan` should bring for `puts` puts, in all.
    public func expectedEvents(_ plan: Plan, puts: Int) -> Int {
        expectedEvents(keys: plan.keys, watched: plan.watched, puts: puts).reduce(0, +)
    }

    /// etcd's `newWatchedKeys` and its round-robin of keys over watchers.
    /// Random indexes may repeat: two watched keys can be the same key.
    func plan(using generator: inout some RandomNumberGenerator) -> (keys: [Data], watched: [[Int]]) {
        let picker = KeyPicker(keySpaceSize: keySpaceSize, sequential: sequentialKeys)
        let keys = (0..<watchedKeyTotal).map { i in
            Data(BenchKeys.key(index: picker.index(forRequest: i, using: &generator), size: keySize))
        }
        let watched = (0..<streams).map { s in
            (0..<watchersPerStream).map { j in (s * watchersPerStream + j) % watchedKeyTotal }
        }
        return (keys, watched)
    }

    /// Events each stream should receive for `puts` puts: per watcher, the
    /// puts to its key (equal keys at two indexes count as one key).
    func expectedEvents(keys: [Data], watched: [[Int]], puts: Int) -> [Int] {
        var putsPerKey: [Data: Int] = [:]
        for i in 0..<puts { putsPerKey[keys[i % keys.count], default: 0] += 1 }
        return watched.map { stream in stream.reduce(0) { $0 + (putsPerKey[keys[$1]] ?? 0) } }
    }
}

public struct WatchBenchResult: Sendable {
    /// Each watcher's create request to its `created` answer (etcd's "Watch
    /// creation summary"); its total runs from the first request to the last answer.
    public var creation: LatencyReport
    public var puts: LatencyReport
    public var events: LatencyReport
}

public enum WatchBench {
    /// Runs the watch benchmark (on `plan`, or a new one); `progress` counts
    /// events (``WatchLoad/expectedEvents(_:puts:)``).
    public static func run(
        _ load: BenchLoad, _ watch: WatchLoad, plan: WatchLoad.Plan? = nil, on connections: BenchConnections,
        progress: BenchProgress
    ) async throws -> WatchBenchResult {
        let plan = plan ?? watch.plan()
        let (keys, watched) = (plan.keys, plan.watched)
        let expected = watch.expectedEvents(keys: keys, watched: watched, puts: load.total)
        let padding = BenchWorkloads.randomBytes(watch.valueSize - 8)
        let clock = ContinuousClock()
        let origin = clock.now
        let starts = PutStarts(count: load.total)
        let created = AtomicCounter()
        let received = AtomicCounter()

        let streams = watched.indices.map { s in connections.client(forRequester: s).watch() }
        return try await withThrowingTaskGroup(of: StreamResult.self) { group in
            for (s, stream) in streams.enumerated() {
                let creates = watched[s].map { index in
                    var create = Etcdserverpb_WatchCreateRequest()
                    create.key = keys[index]
                    return create
                }
                let expecting = expected[s]
                group.addTask {
                    await consume(stream, creates: creates, expecting: expecting, clock: clock, origin: origin,
                                  starts: starts, created: created, received: received, progress: progress)
                }
            }
            // Puts start once every watcher exists.
            let createDeadline = clock.now + watch.eventTimeout
            while created.current < watch.watchers {
                if clock.now > createDeadline {
                    for stream in streams { stream.call.cancel() }
                    throw BenchError("only \(created.current) of \(watch.watchers) watchers were created within \(watch.eventTimeout)")
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            let creation = clock.now - origin

            let value = padding
            let puts = await BenchRunner.run(load, on: connections, progress: BenchProgress(total: load.total)) { client, i, _ in
                var request = Etcdserverpb_PutRequest()
                request.key = keys[i % keys.count]
                var bytes = withUnsafeBytes(of: UInt64(i).bigEndian) { Array($0) }
                bytes += value
                request.value = Data(bytes)
                starts.record(i, at: clock.now - origin)
                _ = try await client.put(request)
            }

            // Puts that failed caused no events: when some did, the count
            // expected is scaled down (which keys they were for is not kept).
            let total = expected.reduce(0, +) * puts.latencies.count / max(load.total, 1)
            let eventDeadline = clock.now + watch.eventTimeout
            while received.current < total && clock.now < eventDeadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            for stream in streams { stream.call.cancel() }
            let eventsEnd = clock.now

            var latencies: [Double] = []
            var creations: [Double] = []
            var errors: [String: Int] = [:]
            for try await result in group {
                latencies += result.latencies
                creations += result.creations
                if let error = result.error { errors[error, default: 0] += 1 }
            }
            let missing = total - latencies.count
            if missing > 0 { errors["event not received within \(watch.eventTimeout) of the last put", default: 0] += missing }
            let events = LatencyReport(latencies: latencies, errors: errors, total: eventsEnd - origin - creation)
            let creationReport = LatencyReport(latencies: creations, errors: [:], total: creation)
            return WatchBenchResult(creation: creationReport, puts: puts, events: events)
        }
    }

    struct StreamResult: Sendable {
        var latencies: [Double]
        var creations: [Double] = []
        var error: String?
    }

    /// Creates the stream's watchers one at a time, each once the last is
    /// `created` (as clientv3's `Watch` does, so each creation is timed
    /// alone), then reads the stream until it has `expecting` events, ends,
    /// or is cancelled.
    private static func consume(
        _ stream: EtcdWatchStream, creates: [Etcdserverpb_WatchCreateRequest], expecting: Int, clock: ContinuousClock,
        origin: ContinuousClock.Instant, starts: PutStarts, created: AtomicCounter, received: AtomicCounter,
        progress: BenchProgress
    ) async -> StreamResult {
        var latencies: [Double] = []
        var creations: [Double] = []
        latencies.reserveCapacity(expecting)
        var sentAt = clock.now
        do {
            if let first = creates.first { try stream.create(first) }
            for try await response in stream.responses {
                if response.created {
                    creations.append(BenchRunner.seconds(clock.now - sentAt))
                    created.add()
                    if creations.count < creates.count {
                        sentAt = clock.now
                        try stream.create(creates[creations.count])
                    }
                }
                if response.canceled {
                    return StreamResult(
                        latencies: latencies, creations: creations, error: "watch canceled by the server: \(response.cancelReason)")
                }
                guard !response.events.isEmpty else { continue }
                let now = clock.now - origin
                for event in response.events {
                    guard let index = putNumber(event.kv.value), let sent = starts.start(of: index) else { continue }
                    latencies.append(BenchRunner.seconds(now - sent))
                }
                received.add(response.events.count)
                progress.advance(by: response.events.count)
                if latencies.count >= expecting {
                    stream.call.cancel()
                    break
                }
            }
        } catch let error as GRPCCallError where error.code == GRPCCallError.cancelledCode {
            // Cancelled by the run: done.
        } catch {
            return StreamResult(latencies: latencies, creations: creations, error: BenchRunner.describe(error))
        }
        return StreamResult(latencies: latencies, creations: creations, error: nil)
    }

    static func putNumber(_ value: Data) -> Int? {
        guard value.count >= 8 else { return nil }
        let number = value.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Int(exactly: number)
    }
}

/// When each put started (since the run's origin), shared by the putters and
/// the watch streams.
final class PutStarts: Sendable {
    private let starts: Mutex<[Duration?]>

    init(count: Int) { starts = Mutex([Duration?](repeating: nil, count: max(0, count))) }

    func record(_ index: Int, at time: Duration) {
        starts.withLock { if $0.indices.contains(index) { $0[index] = time } }
    }

    func start(of index: Int) -> Duration? {
        starts.withLock { $0.indices.contains(index) ? $0[index] : nil }
    }
}
