import EnsembleClient
import NIOCore
import Synchronization

/// One request of a workload as a unary call's bytes: what ``BenchRunner``'s
/// callback requesters send. `make` builds request number `index` with the
/// requester's own random generator; `check` decodes the answer as etcd's
/// client does (a malformed answer counts as an error).
public struct BenchCall: Sendable {
    public let path: String
    public let make: @Sendable (_ index: Int, _ random: inout BenchRandom) -> [UInt8]
    public let check: @Sendable (_ reply: [UInt8]) throws -> Void

    public init(
        path: String, make: @escaping @Sendable (Int, inout BenchRandom) -> [UInt8],
        check: @escaping @Sendable ([UInt8]) throws -> Void
    ) {
        self.path = path
        self.make = make
        self.check = check
    }
}

extension BenchRunner {
    /// The closed loop of ``run(_:on:progress:request:)`` for a unary
    /// workload, with each requester driven by its answers on its
    /// connection's event loop: an answer is recorded and the next request
    /// sent right there, with no task to resume and no hop to another thread
    /// (a task per requester cost the generator about a third of its CPU).
    public static func run(
        _ load: BenchLoad, on connections: BenchConnections, progress: BenchProgress, request call: BenchCall
    ) async -> LatencyReport {
        let start = ContinuousClock.now
        guard load.clients > 0 else { return LatencyReport(latencies: [], errors: [:], total: .zero) }
        let run = CallbackRun(load: load, call: call, progress: progress, start: start)
        let parts = await withCheckedContinuation { continuation in
            run.finished = continuation
            for k in 0..<load.clients {
                let requester = CallbackRequester(
                    run: run, slot: connections.slot(forRequester: k), random: BenchRandom.forRequester(k, seed: run.seed))
                requester.connection.eventLoop.execute { requester.next() }
            }
        }
        var latencies: [Double] = []
        latencies.reserveCapacity(load.total)
        var errors: [String: Int] = [:]
        for part in parts {
            latencies += part.latencies
            errors.merge(part.errors, uniquingKeysWith: +)
        }
        return LatencyReport(latencies: latencies, errors: errors, total: ContinuousClock.now - start)
    }
}

/// What a callback run's requesters share: the request counter, the rate
/// limiter, and where finished requesters leave their records.
private final class CallbackRun: @unchecked Sendable {
    let load: BenchLoad
    let call: BenchCall
    let progress: BenchProgress
    let start: ContinuousClock.Instant
    let seed = UInt64.random(in: 1...UInt64.max)
    let counter = AtomicCounter()
    let limiter: SharedRateLimiter
    /// Set before any requester starts; resumed by the last one to finish.
    var finished: CheckedContinuation<[(latencies: [Double], errors: [String: Int])], Never>?
    private let parts = Mutex<[(latencies: [Double], errors: [String: Int])]>([])

    init(load: BenchLoad, call: BenchCall, progress: BenchProgress, start: ContinuousClock.Instant) {
        self.load = load
        self.call = call
        self.progress = progress
        self.start = start
        limiter = SharedRateLimiter(RateLimiter(perSecond: load.rate))
    }

    func done(_ latencies: [Double], _ errors: [String: Int]) {
        let all = parts.withLock { parts -> [(latencies: [Double], errors: [String: Int])]? in
            parts.append((latencies, errors))
            return parts.count == load.clients ? parts : nil
        }
        if let all { finished?.resume(returning: all) }
    }
}

/// One requester: at most one request in flight, so its state is touched by
/// one thread at a time (its connection's event loop, after the first send),
/// each step ordered after the last by the answer that triggers it.
private final class CallbackRequester: @unchecked Sendable {
    let run: CallbackRun
    let slot: BenchConnection
    /// The slot's connection when last looked at; replaced on its event loop.
    var connection: GRPCConnection
    var random: BenchRandom
    var latencies: [Double] = []
    var errors: [String: Int] = [:]

    init(run: CallbackRun, slot: BenchConnection, random: BenchRandom) {
        self.run = run
        self.slot = slot
        self.connection = slot.current
        self.random = random
        latencies.reserveCapacity(run.load.total / run.load.clients + 1)
    }

    /// Takes the next request number and sends it, after the rate limit's wait.
    func next() {
        let index = run.counter.add()
        guard index < run.load.total else { return run.done(latencies, errors) }
        if run.load.rate > 0 {
            let wait = run.limiter.reserve(now: ContinuousClock.now - run.start)
            if wait > .zero {
                connection.eventLoop.scheduleTask(in: .nanoseconds(wait.nanosecondsSaturated)) { self.send(index) }
                return
            }
        }
        send(index)
    }

    private func send(_ index: Int) {
        // Timed from before the request is built, as etcd's client times it.
        let sent = ContinuousClock.now
        let bytes = run.call.make(index, &random)
        connection.unary(run.call.path, bytes) { result in
            switch result {
            case let .success(reply):
                do {
                    try self.run.call.check(reply)
                    self.latencies.append(BenchRunner.seconds(ContinuousClock.now - sent))
                } catch {
                    self.errors[BenchRunner.describe(error), default: 0] += 1
                }
            case let .failure(error):
                self.errors[BenchRunner.describe(error), default: 0] += 1
            }
            self.run.progress.advance()
            guard case .failure = result else { return self.next() }
            // A call that fails at once completes on this stack: go on from
            // the event loop's queue, or a dead connection would recurse.
            if self.connection.isOpen { return self.connection.eventLoop.execute { self.next() } }
            self.slot.whenOpen { dialed in
                (dialed ?? self.connection).eventLoop.execute {
                    if let dialed { self.connection = dialed }
                    self.next()
                }
            }
        }
    }
}
