import ArgumentParser
import EnsembleBench

/// `ensemble bench watch`, with etcd's `benchmark watch` flags: `--streams`
/// streams of `--watch-per-stream` watchers on keys of a `--key-space-size`
/// key space, then `--put-total` puts (or the global `--total`) at
/// `--put-rate` (or `--rate`), and the latency of every event from its put's
/// start (see ``WatchLoad``).
struct BenchWatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch", abstract: "Benchmark watch event latency: watchers on a key space, then puts to it.")

    @OptionGroup var global: BenchGlobalOptions

    @Option(help: "Watch streams, spread over the connections.")
    var streams = 10

    @Option(name: .customLong("watch-per-stream"), help: "Watchers per stream.")
    var watchPerStream = 100

    @Option(name: .customLong("put-total"), help: "Puts in all (default: the global --total).")
    var putTotal: Int?

    @Option(name: .customLong("put-rate"), help: "Puts per second (default: the global --rate; 0: no limit).")
    var putRate: Int?

    @Option(help: "Key size of the watched keys.")
    var keySize = 32

    @Option(name: .customLong("key-space-size"), help: "Keys watched and put to.")
    var keySpaceSize = 1

    @Flag(name: .customLong("sequential-keys"), help: "Keys in index order (else random indexes).")
    var sequentialKeys = false

    @Option(help: "Value size of each put (at least 8).")
    var valSize = 32

    @Option(help: "Seconds to wait for outstanding events after the last put.")
    var eventTimeout = 10

    func run() async throws {
        var load = try await global.load()
        if let putTotal { load.total = putTotal }
        if let putRate { load.rate = putRate }
        try load.validate()
        let watch = WatchLoad(
            streams: streams, watchersPerStream: watchPerStream, keySpaceSize: keySpaceSize, sequentialKeys: sequentialKeys,
            keySize: keySize, valueSize: valSize, eventTimeout: .seconds(eventTimeout))
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
        let seconds = Double(result.creation.components.attoseconds) / 1e18 + Double(result.creation.components.seconds)
        say("Watch creation: \(watch.watchers) watchers on \(watch.streams) streams in \(Int(seconds * 1000)) ms")
        say("\nPut summary (\(result.puts.latencies.count) puts):" + result.puts.render())
        say("Watch event latency (put start to event, \(result.events.latencies.count) events):" + result.events.render())
    }
}
