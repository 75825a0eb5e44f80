import ArgumentParser
import EnsembleBench

/// `ensemble bench watch`, etcd's `benchmark watch` with its flags and
/// defaults: `--streams` streams of `--watch-per-stream` watchers on
/// `--watched-key-total` keys of a `--key-space-size` key space (round-robin),
/// then `--put-total` puts to those keys at `--put-rate` (or the global
/// `--rate`); reports the watchers' creation, the puts, and every event's
/// latency from its put's start (see ``WatchLoad``).
struct BenchWatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch", abstract: "Benchmark watch: watchers on a set of keys, then puts to them.")

    @OptionGroup var global: BenchGlobalOptions

    @Option(help: "Watch streams, spread over the connections.")
    var streams = 10

    @Option(name: .customLong("watch-per-stream"), help: "Watchers per stream.")
    var watchPerStream = 100

    @Option(name: .customLong("watched-key-total"), help: "Keys watched (watchers take them round-robin) and put to.")
    var watchedKeyTotal = 1

    @Option(name: .customLong("put-total"), help: "Puts in all (the global --total does not apply, as in etcd's tool).")
    var putTotal = 1000

    @Option(name: .customLong("put-rate"), help: "Puts per second (default: the global --rate; 0: no limit).")
    var putRate: Int?

    @Option(help: "Key size of the watched keys.")
    var keySize = 32

    @Option(name: .customLong("key-space-size"), help: "Key space the watched keys are picked from.")
    var keySpaceSize = 1

    @Flag(name: .customLong("sequential-keys"), help: "Keys in index order (else random indexes).")
    var sequentialKeys = false

    @Option(help: "Value size of each put (at least 8).")
    var valSize = 32

    @Option(help: "Seconds to wait for outstanding events after the last put.")
    var eventTimeout = 10

    func run() async throws {
        var load = try await global.load()
        load.total = putTotal
        if let putRate { load.rate = putRate }
        try load.validate()
        let watch = WatchLoad(
            streams: streams, watchersPerStream: watchPerStream, watchedKeyTotal: watchedKeyTotal, keySpaceSize: keySpaceSize,
            sequentialKeys: sequentialKeys, keySize: keySize, valueSize: valSize, eventTimeout: .seconds(eventTimeout))
        try watch.validate()
        let plan = watch.plan()
        let connections = try await global.open(load)
        let progress = BenchProgress(total: watch.expectedEvents(plan, puts: load.total))
        let display = BenchProgressDisplay(progress)
        let result: WatchBenchResult
        do {
            result = try await WatchBench.run(load, watch, plan: plan, on: connections, progress: progress)
        } catch {
            await display.stop()
            await connections.close()
            throw error
        }
        await display.stop()
        await connections.close()
        say("Watch creation summary (\(watch.watchers) watchers on \(watch.streams) streams):" + result.creation.render())
        say("\nPut summary (\(result.puts.latencies.count) puts):" + result.puts.render())
        say("Watch events received summary (put start to event, \(result.events.latencies.count) events):" + result.events.render())
    }
}
