import ArgumentParser
import EnsembleBench

/// `ensemble bench watch`: watchers of one key, puts to it, and the latency of
/// every event from its put's start (see ``WatchLoad``). `--total` is the
/// number of puts; `--clients` and `--rate` drive the putters.
struct BenchWatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch", abstract: "Benchmark watch event latency: N watchers of one key, --total puts to it.")

    @OptionGroup var global: BenchGlobalOptions

    @Option(help: "Total number of watchers.")
    var watchers = 10

    @Option(help: "Watch streams carrying the watchers, spread over the connections.")
    var streams = 10

    @Option(help: "Key size of the watched key.")
    var keySize = 32

    @Option(help: "Value size of each put (at least 8).")
    var valSize = 32

    @Option(help: "Seconds to wait for outstanding events after the last put.")
    var eventTimeout = 10

    func run() async throws {
        let load = try global.load()
        let watch = WatchLoad(
            watchers: watchers, streams: min(streams, watchers), keySize: keySize, valueSize: valSize,
            eventTimeout: .seconds(eventTimeout))
        try watch.validate()
        let connections = try await global.open(load)
        let progress = BenchProgress(total: load.total * watchers)
        let display = BenchProgressDisplay(progress)
        let result: WatchBenchResult
        do {
            result = try await WatchBench.run(load, watch, on: connections, progress: progress)
        } catch {
            await display.stop()
            await connections.close()
            throw error
        }
        await display.stop()
        await connections.close()
        let seconds = Double(result.creation.components.attoseconds) / 1e18 + Double(result.creation.components.seconds)
        say("Watch creation: \(watchers) watchers on \(watch.streams) streams in \(Int(seconds * 1000)) ms")
        say("\nPut summary (\(result.puts.latencies.count) puts):" + result.puts.render())
        say("Watch event latency (put start to event, \(result.events.latencies.count) events):" + result.events.render())
    }
}
