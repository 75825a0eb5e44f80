import ArgumentParser
import EnsembleAPI
import EnsembleBench
import EnsembleClient
import Foundation

/// `ensemble bench`: etcd's `tools/benchmark` against any etcd v3 endpoint —
/// real etcd and Ensemble are measured by the same tool, same load.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark any etcd v3 endpoint, with the flags and report of etcd's tools/benchmark.",
        discussion: """
            The global options (--endpoints, --conns, --clients, --total, --rate) may come before \
            or after the subcommand, e.g.
              ensemble bench --endpoints=127.0.0.1:2379 --conns=10 --clients=100 put --total=100000 --key-size=8 --val-size=256
            """,
        subcommands: [BenchPut.self, BenchRange.self, BenchTxnPut.self, BenchWatch.self])

    // Declared here too so they parse before the subcommand name, as etcd's
    // persistent flags do; the subcommands read them from their own group.
    @OptionGroup var global: BenchGlobalOptions
}

/// etcd's global benchmark flags.
struct BenchGlobalOptions: ParsableArguments {
    @Option(help: "Comma-separated etcd v3 endpoints (host:port, https://host:port).")
    var endpoints = "127.0.0.1:2379"

    @Option(help: "Total number of gRPC connections.")
    var conns = 1

    @Option(help: "Total number of concurrent requesters, spread over the connections.")
    var clients = 1

    @Option(help: "Total number of requests.")
    var total = 10_000

    @Option(help: "Maximum requests per second over the whole run (0 is no limit).")
    var rate = 0

    @Flag(help: "Send every request to the member that leads, found among --endpoints (etcd's flag).")
    var targetLeader = false

    @Option(help: "Event-loop threads driving the connections (etcd's tool uses every core).")
    var eventLoopThreads = 1

    @OptionGroup var tls: TLSOptions

    /// The run's connections (TLS to `https://` endpoints).
    func open(_ load: BenchLoad) async throws -> BenchConnections {
        try await BenchConnections.open(
            load.conns, to: load.endpoints, eventLoopThreads: eventLoopThreads,
            options: try tls.connectionOptions(for: load.endpoints))
    }

    func load() async throws -> BenchLoad {
        var load = BenchLoad(
            endpoints: try BenchEndpoint.parseList(endpoints), conns: conns, clients: clients, total: total, rate: rate)
        try load.validate()
        if targetLeader { load.endpoints = [try await leader(among: load.endpoints)] }
        return load
    }

    /// The endpoint whose member leads (asked with Maintenance.Status, as
    /// etcdctl endpoint status does); throws when none of them does.
    func leader(among endpoints: [BenchEndpoint]) async throws -> BenchEndpoint {
        var answers: [String] = []
        for endpoint in endpoints {
            do {
                var options = try tls.connectionOptions(for: [endpoint])
                if !endpoint.tls { options.tls = nil }
                let etcd = try await EtcdClient.connect(host: endpoint.host, port: endpoint.port, options: options)
                let answer: Result<Etcdserverpb_StatusResponse, any Error>
                do {
                    answer = .success(try await etcd.call(
                        "/etcdserverpb.Maintenance/Status", Etcdserverpb_StatusRequest(), as: Etcdserverpb_StatusResponse.self,
                        timeout: .seconds(5)))
                } catch {
                    answer = .failure(error)
                }
                await etcd.connection.close()
                let status = try answer.get()
                if status.leader != 0, status.leader == status.header.memberID {
                    say("bench targets the leader, \(endpoint) (member \(String(status.leader, radix: 16)))")
                    return endpoint
                }
                answers.append("\(endpoint): follower of \(String(status.leader, radix: 16))")
            } catch {
                answers.append("\(endpoint): \(error)")
            }
        }
        throw BenchError("--target-leader: no endpoint is the leader (\(answers.joined(separator: "; ")))")
    }
}

/// The key and value flags of put and txn-put.
struct BenchWriteOptions: ParsableArguments {
    @Option(help: "Key size of each put.")
    var keySize = 8

    @Option(help: "Value size of each put.")
    var valSize = 8

    @Option(help: "Maximum possible keys.")
    var keySpaceSize = 1

    /// `sequential`: put's `--sequential-keys`; txn-put's keys always are (etcd's have no flag).
    func writes(sequential: Bool) throws -> BenchWorkloads.Writes {
        let writes = BenchWorkloads.Writes(
            keySize: keySize, valueSize: valSize, keys: KeyPicker(keySpaceSize: keySpaceSize, sequential: sequential))
        guard keySpaceSize > 0 else { throw BenchError("expected positive --key-space-size, got \(keySpaceSize)") }
        try writes.validate()
        return writes
    }
}

struct BenchPut: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "put", abstract: "Benchmark put.")

    @OptionGroup var global: BenchGlobalOptions
    @OptionGroup var write: BenchWriteOptions

    @Flag(help: "Use sequential keys (key i % key-space-size) instead of random ones.")
    var sequentialKeys = false

    func run() async throws {
        let load = try await global.load()
        let request = BenchWorkloads.put(try write.writes(sequential: sequentialKeys))
        try await runClosedLoop(load, global, request: request)
    }
}

struct BenchTxnPut: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "txn-put", abstract: "Benchmark txn-put (puts in the success branch, no compares).")

    @OptionGroup var global: BenchGlobalOptions
    @OptionGroup var write: BenchWriteOptions

    @Option(help: "Number of puts per txn.")
    var txnOps = 1

    func run() async throws {
        let load = try await global.load()
        let writes = try write.writes(sequential: true)
        guard txnOps > 0 else { throw BenchError("expected positive --txn-ops, got \(txnOps)") }
        guard txnOps <= write.keySpaceSize else {
            throw BenchError("expected --txn-ops no larger than --key-space-size, got txn-ops(\(txnOps)) key-space-size(\(write.keySpaceSize))")
        }
        try await runClosedLoop(load, global, request: BenchWorkloads.txnPut(writes, opsPerTxn: txnOps))
    }
}

struct BenchRange: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "range", abstract: "Benchmark range.")

    @OptionGroup var global: BenchGlobalOptions

    @Argument(help: "The key to read.")
    var key: String

    @Argument(help: "The end of the range (exclusive); a single key without it.")
    var end: String?

    @Option(help: "Linearizable (l) or Serializable (s).")
    var consistency = "l"

    func run() async throws {
        let load = try await global.load()
        switch consistency {
        case "l": say("bench with linearizable range")
        case "s": say("bench with serializable range")
        default: throw ValidationError("--consistency must be l or s")
        }
        let request = BenchWorkloads.range(key: key, end: end, serializable: consistency == "s")
        try await runClosedLoop(load, global, request: request)
    }
}

/// Runs a closed-loop workload with a progress bar, then prints etcd's report.
func runClosedLoop(_ load: BenchLoad, _ global: BenchGlobalOptions, request: BenchCall) async throws {
    let connections = try await global.open(load)
    let progress = BenchProgress(total: load.total)
    let display = BenchProgressDisplay(progress)
    let report = await BenchRunner.run(load, on: connections, progress: progress, request: request)
    await display.stop()
    await connections.close()
    say(report.render())
}
