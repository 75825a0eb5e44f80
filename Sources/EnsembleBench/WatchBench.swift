import EnsembleAPI
import EnsembleClient
import Foundation
import Synchronization

/// `bench watch`: `watchers` watchers of one key, spread over `streams` Watch
/// streams (over the run's connections); then `total` puts of that key by the
/// run's requesters at the run's rate. Each event's latency is from the start
/// of the put that caused it to its arrival at a watcher, so one put yields
/// one latency per watcher.
///
/// This is simpler than etcd's `watch` and closest to its `watch-latency`
/// (which measures from the put's answer instead, and puts one at a time).
/// The put's number travels in the first 8 bytes of its value.
public struct WatchLoad: Sendable {
    public var watchers: Int
    public var streams: Int
    public var keySize: Int
    /// At least 8: the value carries the put's number.
    public var valueSize: Int
    /// How long after the last put to wait for outstanding events; those still
    /// missing then are counted as errors.
    public var eventTimeout: Duration

    public init(watchers: Int, streams: Int, keySize: Int, valueSize: Int, eventTimeout: Duration = .seconds(10)) {
        self.watchers = watchers
        self.streams = streams
        self.keySize = keySize
        self.valueSize = valueSize
        self.eventTimeout = eventTimeout
    }

    public func validate() throws(BenchError) {
        guard watchers > 0 else { throw BenchError("--watchers must be at least 1") }
        guard streams > 0 else { throw BenchError("--streams must be at least 1") }
        guard keySize > 0 else { throw BenchError("--key-size must be at least 1") }
        guard valueSize >= 8 else { throw BenchError("--val-size must be at least 8 (the value carries the put's number)") }
    }
}

public struct WatchBenchResult: Sendable {
    /// From the first create request to the last `created` answer.
    public var creation: Duration
    public var puts: LatencyReport
    public var events: LatencyReport
}

public enum WatchBench {
    /// Runs the watch benchmark; `progress` counts events (watchers × total).
    public static func run(
        _ load: BenchLoad, _ watch: WatchLoad, on connections: BenchConnections, progress: BenchProgress
    ) async throws -> WatchBenchResult {
        let key = Data(BenchWorkloads.randomBytes(watch.keySize))
        let padding = BenchWorkloads.randomBytes(watch.valueSize - 8)
        let clock = ContinuousClock()
        let origin = clock.now
        let starts = PutStarts(count: load.total)
        let created = AtomicCounter()
        let received = AtomicCounter()

        let streams: [(stream: EtcdWatchStream, watchers: Int)] = (0..<watch.streams).map { s in
            let share = watch.watchers / watch.streams + (s < watch.watchers % watch.streams ? 1 : 0)
            return (connections.client(forRequester: s).watch(), share)
        }
        return try await withThrowingTaskGroup(of: StreamResult.self) { group in
            for (stream, watchers) in streams where watchers > 0 {
                var create = Etcdserverpb_WatchCreateRequest()
                create.key = key
                for _ in 0..<watchers { try stream.create(create) }
                group.addTask {
                    await consume(stream, expecting: watchers * load.total, clock: clock, origin: origin,
                                  starts: starts, created: created, received: received, progress: progress)
                }
            }
            // Puts start once every watcher exists.
            let createDeadline = clock.now + watch.eventTimeout
            while created.current < watch.watchers {
                if clock.now > createDeadline {
                    for (stream, _) in streams { stream.call.cancel() }
                    throw BenchError("only \(created.current) of \(watch.watchers) watchers were created within \(watch.eventTimeout)")
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            let creation = clock.now - origin

            let value = padding
            let puts = await BenchRunner.run(load, on: connections, progress: BenchProgress(total: load.total)) { client, i, _ in
                var request = Etcdserverpb_PutRequest()
                request.key = key
                var bytes = withUnsafeBytes(of: UInt64(i).bigEndian) { Array($0) }
                bytes += value
                request.value = Data(bytes)
                starts.record(i, at: clock.now - origin)
                _ = try await client.put(request)
            }

            let expected = watch.watchers * puts.latencies.count
            let eventDeadline = clock.now + watch.eventTimeout
            while received.current < expected && clock.now < eventDeadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            for (stream, _) in streams { stream.call.cancel() }
            let eventsEnd = clock.now

            var latencies: [Double] = []
            var errors: [String: Int] = [:]
            for try await result in group {
                latencies += result.latencies
                if let error = result.error { errors[error, default: 0] += 1 }
            }
            let missing = expected - latencies.count
            if missing > 0 { errors["event not received within \(watch.eventTimeout) of the last put", default: 0] += missing }
            let events = LatencyReport(latencies: latencies, errors: errors, total: eventsEnd - origin - creation)
            return WatchBenchResult(creation: creation, puts: puts, events: events)
        }
    }

    struct StreamResult: Sendable {
        var latencies: [Double]
        var error: String?
    }

    /// Reads one stream until it has `expecting` events, ends, or is cancelled.
    private static func consume(
        _ stream: EtcdWatchStream, expecting: Int, clock: ContinuousClock, origin: ContinuousClock.Instant,
        starts: PutStarts, created: AtomicCounter, received: AtomicCounter, progress: BenchProgress
    ) async -> StreamResult {
        var latencies: [Double] = []
        latencies.reserveCapacity(expecting)
        do {
            for try await response in stream.responses {
                if response.created { created.add() }
                if response.canceled {
                    return StreamResult(latencies: latencies, error: "watch canceled by the server: \(response.cancelReason)")
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
            return StreamResult(latencies: latencies, error: BenchRunner.describe(error))
        }
        return StreamResult(latencies: latencies, error: nil)
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
