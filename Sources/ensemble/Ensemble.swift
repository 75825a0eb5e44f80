import ArgumentParser
import Dispatch
import EnsembleServer
import Foundation

/// The `ensemble` command line. Thin: it parses arguments and calls into the
/// modules.
@main
struct Ensemble: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ensemble",
        abstract: "Ensemble: a strongly consistent control plane that speaks etcd's v3 API.",
        subcommands: [Dev.self, Bench.self])
}

/// `ensemble dev`: a local three-member cluster on loopback.
struct Dev: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a local 3-member cluster on loopback (data under ./.ensemble). Ctrl-C stops it.")

    @Option(help: "Data directory for the three members.")
    var dataDir = ".ensemble"

    @Option(help: "Client (etcd gRPC) ports of the three members.")
    var clientPorts = "2379,22379,32379"

    @Option(help: "Peer (Raft) ports of the three members.")
    var peerPorts = "2380,22380,32380"

    func run() async throws {
        let client = clientPorts.split(separator: ",").compactMap { Int($0) }
        let peer = peerPorts.split(separator: ",").compactMap { Int($0) }
        guard client.count == 3, peer.count == 3 else {
            throw ValidationError("--client-ports and --peer-ports need three ports each")
        }
        say("ensemble dev: starting 3 members, data in \(dataDir)/")
        let cluster = try await DevCluster(dataDirectory: dataDir, clientPorts: client, peerPorts: peer)
        for member in cluster.members {
            say("  member \(member.id): client 127.0.0.1:\(member.clientPort)  peer 127.0.0.1:\(member.peerPort)")
        }
        let leader = try await cluster.waitForLeader()
        say("leader: member \(leader)")
        say("try:    etcdctl --endpoints=\(cluster.endpoints) put hello world")
        say("        etcdctl --endpoints=\(cluster.endpoints) get hello")
        say("Ctrl-C stops all members.")
        await waitForInterrupt()
        say("\nensemble dev: stopping…")
        await cluster.shutdown()
        say("ensemble dev: stopped; data kept in \(dataDir)/")
    }

    /// Suspends until SIGINT or SIGTERM.
    private func waitForInterrupt() async {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = OnceFlag()
            for sig in [SIGINT, SIGTERM] {
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .main)
                source.setEventHandler {
                    if once.take() { continuation.resume() }
                }
                source.resume()
                Self.sources.append(source)
            }
        }
    }

    nonisolated(unsafe) static var sources: [any DispatchSourceSignal] = []
}

/// True exactly once.
final class OnceFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var taken = false
    func take() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if taken { return false }
        taken = true
        return true
    }
}

/// Writes a line to standard output at once (unbuffered), so progress shows
/// also when the output is piped to a file.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
