import ArgumentParser
import EnsembleServer
import Foundation

/// `ensemble snapshot restore|status`: backups taken with `etcdctl snapshot
/// save` from an Ensemble or an etcd 3.4 member (one format, etcd's bbolt
/// file), restored into a new cluster as with etcdctl.
struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Restore or inspect a snapshot file (`etcdctl snapshot save` takes one).",
        subcommands: [Restore.self, Status.self])

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a new member's data directory from a snapshot file.",
            discussion: """
                Run once per member of the new cluster, with the same --initial-cluster and a
                new --initial-cluster-token, then start each member with `ensemble serve` on its
                data directory (the --initial-* flags are then ignored). Keys, history,
                revisions, leases (with their whole TTL again) and alarms come from the
                snapshot; the members and cluster id are new. Takes backups saved from
                Ensemble or from etcd 3.4.
                """)
        @Argument(help: "The snapshot file.") var file: String
        @Option(help: "This member's name in --initial-cluster.") var name = "default"
        @Option(name: .customLong("data-dir"), help: "The data directory to create (default: <name>.etcd).")
        var dataDir: String?
        @Option(name: .customLong("initial-cluster"), help: "The new cluster's members: name=peerURL,…")
        var initialCluster = "default=http://localhost:2380"
        @Option(name: .customLong("initial-cluster-token"), help: "The new cluster's token (as `ensemble serve` gets it).")
        var initialClusterToken = "etcd-cluster"
        @Option(name: .customLong("initial-advertise-peer-urls"), help: "This member's peer URLs (must match --initial-cluster).")
        var initialAdvertisePeerURLs = "http://localhost:2380"
        @Flag(name: .customLong("skip-hash-check"), help: "Do not check the file's SHA-256.")
        var skipHashCheck = false

        func run() async throws {
            var configuration = MemberConfiguration()
            configuration.name = name
            configuration.dataDirectory = dataDir ?? "\(name).etcd"
            configuration.initialCluster = initialCluster
            configuration.initialClusterToken = initialClusterToken
            configuration.initialAdvertisePeerURLs = initialAdvertisePeerURLs.split(separator: ",").map(String.init)
            print("restoring \(file) into \(configuration.dataDirectory) as \(name)")
            let (identity, restored) = try SnapshotRestore.restore(file: file, into: configuration, verifyHash: !skipHashCheck)
            for warning in restored.warnings { print("warning: \(warning)") }
            print("restored revision \(restored.revision), \(restored.totalKeys) keys: member \(String(identity.memberID, radix: 16)) of cluster \(String(identity.clusterID, radix: 16))")
            print("start it with:")
            print("  ensemble serve --name \(name) --data-dir \(configuration.dataDirectory) \\")
            print("    --listen-peer-urls \(initialAdvertisePeerURLs) --initial-advertise-peer-urls \(initialAdvertisePeerURLs) \\")
            print("    --listen-client-urls http://HOST:2379 --advertise-client-urls http://HOST:2379")
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a snapshot file; print its hash, revision, keys and size.")
        @Argument(help: "The snapshot file.") var file: String
        @Option(name: [.customShort("w"), .customLong("write-out")], help: "simple, table or json (as etcdctl).")
        var writeOut = "simple"

        func validate() throws {
            guard ["simple", "table", "json"].contains(writeOut) else {
                throw ValidationError("unknown --write-out \(writeOut) (simple, table or json)")
            }
        }

        func run() async throws {
            let status = try SnapshotRestore.status(file: file)
            let hash = String(status.hash, radix: 16)
            let size = EtcdBackupFile.humanized(status.totalSize)
            switch writeOut {
            case "json":
                print("{\"hash\":\(status.hash),\"revision\":\(status.revision),\"totalKey\":\(status.totalKeys),\"totalSize\":\(status.totalSize)}")
            case "table":
                let rows = [["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], [hash, "\(status.revision)", "\(status.totalKeys)", size]]
                let widths = (0..<4).map { column in rows.map { $0[column].count }.max() ?? 0 }
                let line = "+" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "+") + "+"
                print(line)
                for (i, row) in rows.enumerated() {
                    print("| " + zip(row, widths).map { $0 + String(repeating: " ", count: $1 - $0.count) }.joined(separator: " | ") + " |")
                    if i == 0 { print(line) }
                }
                print(line)
            default:
                print("\(hash), \(status.revision), \(status.totalKeys), \(size)")
            }
        }
    }
}
