import ArgumentParser
import Dispatch
import EnsembleServer
import Foundation

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

    @Flag(help: "Serve both ports over TLS with client certificates (a CA and certificates made in <data-dir>/tls).")
    var tls = false

    func run() async throws {
        let client = clientPorts.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let peer = peerPorts.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard client.count == 3, peer.count == 3, (client + peer).allSatisfy({ (1...65535).contains($0) }) else {
            throw ValidationError("--client-ports and --peer-ports need three ports (1–65535) each")
        }
        // The members of an existing cluster reach each other at the peer
        // ports they were made with (kept in their data): other ports would
        // leave them dialling the old ones, with no leader. Said plainly.
        let record = dataDir + "/dev-ports"
        let ports = "client \(client.map(String.init).joined(separator: ",")) peer \(peer.map(String.init).joined(separator: ","))"
        if let kept = try? String(contentsOfFile: record, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), kept != ports {
            throw ValidationError(
                "the cluster in \(dataDir)/ was made with ports \(kept); give those (--client-ports, --peer-ports) or remove \(dataDir)/ to start over")
        }
        // Caught from here on: Ctrl-C during start-up still stops the members cleanly.
        let interrupts = Interrupts()
        say("ensemble dev: starting 3 members, data in \(dataDir)/")
        let cluster = try await DevCluster(dataDirectory: dataDir, clientPorts: client, peerPorts: peer, tls: tls)
        try? (ports + "\n").write(toFile: record, atomically: true, encoding: .utf8)
        for member in cluster.members {
            say("  \(member.name) (\(String(member.id, radix: 16))): client 127.0.0.1:\(member.clientPort)  peer 127.0.0.1:\(member.peerPort)")
        }
        let leader: UInt64
        do {
            leader = try await cluster.waitUntilReady()
        } catch {
            say("ensemble dev: no leader came (\(error)); stopping")
            await cluster.shutdown()
            throw ExitCode(1)
        }
        if interrupts.wasReceived {
            say("ensemble dev: stopping…")
            await cluster.shutdown()
            return
        }
        say("leader: \(cluster.members.first { $0.id == leader }?.name ?? String(leader, radix: 16))")
        let flags = cluster.tls.map { " " + $0.etcdctlFlags } ?? ""
        if let tls = cluster.tls { say("tls:    CA and certificates in \(tls.directory)/ (clients must present one)") }
        say("try:    etcdctl --endpoints=\(cluster.endpoints)\(flags) put hello world")
        say("        etcdctl --endpoints=\(cluster.endpoints)\(flags) get hello")
        say("Ctrl-C stops all members.")
        await interrupts.wait()
        say("\nensemble dev: stopping…")
        await cluster.shutdown()
        say("ensemble dev: stopped; data kept in \(dataDir)/")
    }
}
