import Bolt
import EnsembleServer
import Foundation
import KV
import Raft
import RaftStorage
import Testing

/// A backup taken with the real `etcdctl snapshot save` from a running
/// cluster, restored with `ensemble snapshot restore` into three new members,
/// which `ensemble serve` then runs: the keys, their history and revisions and
/// the leases are back; the members and cluster id are the new cluster's.
@Suite(.serialized, .timeLimit(.minutes(3))) struct SnapshotRestoreTests {
    @Test func aSavedSnapshotRestoresIntoANewCluster() async throws {
        let backup = NSTemporaryDirectory() + "ensemble-backup-\(UUID().uuidString).db"
        defer { try? FileManager.default.removeItem(atPath: backup) }

        let old = try ProcessCluster()
        let leader = try #require(await old.leader(), "no leader; log:\n\(old.log(0))")
        let endpoint = "127.0.0.1:\(old.members[leader].clientPort)"
        func run(_ endpoints: String, _ arguments: [String]) async throws -> String {
            let (status, output) = try await etcdctl(endpoints: endpoints, arguments)
            #expect(status == 0, "etcdctl \(arguments): \(output)")
            return output
        }
        _ = try await run(endpoint, ["put", "config/a", "1"])
        _ = try await run(endpoint, ["put", "config/a", "2"])
        _ = try await run(endpoint, ["put", "config/b", "x"])
        _ = try await run(endpoint, ["del", "config/b"])
        let lease = try await run(endpoint, ["lease", "grant", "600"])
        let leaseID = try #require(lease.firstMatch(of: /lease ([0-9a-f]+) granted/).map { String($0.1) }, "\(lease)")
        _ = try await run(endpoint, ["put", "--lease=\(leaseID)", "session", "alive"])
        let status = try await run(endpoint, ["endpoint", "status", "-w", "json"])
        let revision = try #require(status.firstMatch(of: /"revision":(\d+)/).map { Int($0.1) ?? 0 })
        let oldCluster = try #require(status.firstMatch(of: /"cluster_id":(\d+)/).map { String($0.1) })
        let saved = try await run(endpoint, ["snapshot", "save", backup])
        #expect(saved.contains("Snapshot saved at \(backup)"), "\(saved)")
        old.stop()

        let binary = try ProcessCluster.binaryPath()
        let (checked, summary) = try await runProcess(binary, ["snapshot", "status", backup])
        let (_, etcdctlSummary) = try await etcdctl(endpoints: endpoint, ["snapshot", "status", backup])
        #expect(checked == 0 && summary.contains(", \(revision), ") && summary == etcdctlSummary, "ensemble: \(summary), etcdctl: \(etcdctlSummary)")

        let new = try ProcessCluster { cluster in
            for member in cluster.members {
                // One data directory written with a trailing slash, as people do.
                let slash = member.name == cluster.members[1].name ? "/" : ""
                let (code, output) = try runProcessBlocking(binary, [
                    "snapshot", "restore", backup, "--name", member.name, "--data-dir", "\(cluster.directory)/\(member.name)\(slash)",
                    "--initial-cluster", cluster.initialCluster, "--initial-cluster-token", "restored",
                    "--initial-advertise-peer-urls", "http://\(member.host):\(member.peerPort)",
                ])
                #expect(code == 0 && output.contains("restored revision \(revision)"), "\(output)")
            }
            // A data directory is never overwritten.
            let member = cluster.members[0]
            let (code, output) = try runProcessBlocking(binary, [
                "snapshot", "restore", backup, "--name", member.name, "--data-dir", "\(cluster.directory)/\(member.name)",
                "--initial-cluster", cluster.initialCluster, "--initial-advertise-peer-urls", "http://\(member.host):\(member.peerPort)",
            ])
            #expect(code != 0 && output.contains("exists"), "\(output)")
        }
        defer { new.stop() }
        #expect(await new.leader() != nil, "no leader after the restore; log:\n\(new.log(0))")
        // Below, etcdctl asks every member: each must have started (CI found
        // one still replaying, its client port not yet bound).
        #expect(await new.everyMemberServes(), "a restored member did not start; logs:\n\((0..<3).map { new.log($0) }.joined(separator: "\n---\n"))")
        let endpoints = new.endpoints.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        #expect(try await run(endpoints, ["get", "config/a", "--print-value-only"]) == "2\n")
        #expect(try await run(endpoints, ["get", "config/a", "--rev=\(revision - 4)", "--print-value-only"]) == "1\n", "history is back")
        #expect(try await run(endpoints, ["get", "config/b"]).isEmpty)
        #expect(try await run(endpoints, ["lease", "list"]).contains(leaseID))
        #expect(try await run(endpoints, ["get", "session", "--print-value-only"]) == "alive\n")
        let members = try await run(endpoints, ["member", "list"])
        for member in new.members { #expect(members.contains("http://127.0.0.1:\(member.peerPort)"), "\(members)") }
        let newStatus = try await run(endpoints, ["endpoint", "status", "-w", "json"])
        #expect(!newStatus.contains("\"cluster_id\":\(oldCluster),"), "a new cluster id: \(newStatus)")
        _ = try await run(endpoints, ["put", "config/c", "3"])
        let after = try await run(endpoints, ["get", "config/c", "-w", "json"])
        #expect(after.contains("\"mod_revision\":\(revision + 1)"), "revisions continue: \(after)")
    }

    /// Refusals name what is wrong, and leave nothing behind; for a backup in
    /// etcd's format (what the Snapshot call streams) and for one in the
    /// format Ensemble streamed before.
    @Test(arguments: ["etcd", "ensemble"]) func restoreRefusesWhatItCannotUse(format: String) throws {
        let directory = NSTemporaryDirectory() + "ensemble-restore-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let machine = KVStateMachine()
        _ = machine.apply(.put(PutRequest(key: Array("k".utf8), value: Array("v".utf8))))
        _ = machine.apply(.leaseGrant(id: 7, ttl: 600))
        _ = machine.apply(.leaseCheckpoint([.init(id: 7, remainingTTL: 3)]))
        let file = directory + "/backup.db"
        let bytes =
            format == "etcd"
            ? EtcdBackupFile.file(database: machine.freeze().etcdBackup(consistentIndex: 9).bytes())
            : MaintenanceService.snapshotFile(state: machine.snapshot())
        try Data(bytes).write(to: URL(fileURLWithPath: file))

        var configuration = MemberConfiguration()
        configuration.name = "x"
        configuration.initialCluster = "a=http://127.0.0.1:1,b=http://127.0.0.1:2"
        configuration.initialAdvertisePeerURLs = ["http://127.0.0.1:1"]
        configuration.dataDirectory = directory + "/x"
        #expect(throws: ConfigurationError.self) { try SnapshotRestore.restore(file: file, into: configuration) }
        configuration.name = "a"
        configuration.initialAdvertisePeerURLs = ["http://127.0.0.1:9"]
        #expect(throws: ConfigurationError.self) { try SnapshotRestore.restore(file: file, into: configuration) }
        var damaged = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
        damaged[3] ^= 1
        try Data(damaged).write(to: URL(fileURLWithPath: directory + "/damaged.db"))
        configuration.initialAdvertisePeerURLs = ["http://127.0.0.1:1"]
        #expect(throws: ConfigurationError.self) { try SnapshotRestore.restore(file: directory + "/damaged.db", into: configuration) }
        #expect(!FileManager.default.fileExists(atPath: configuration.dataDirectory))

        // --skip-hash-check takes a file whose hash does not match.
        var rehashed = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
        rehashed[rehashed.count - 1] ^= 1
        try Data(rehashed).write(to: URL(fileURLWithPath: directory + "/damaged.db"))
        #expect(throws: ConfigurationError.self) { try SnapshotRestore.status(file: directory + "/damaged.db") }
        #expect(try SnapshotRestore.status(file: directory + "/damaged.db", verifyHash: false).revision == 2)

        #expect(throws: ConfigurationError.self, "a file that is not there") {
            try SnapshotRestore.status(file: directory + "/missing.db")
        }
        let identity = try SnapshotRestore.restore(file: file, into: configuration).identity
        #expect(identity.name == "a")
        #expect(try SnapshotRestore.status(file: file).revision == 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["backup.db", "damaged.db", "x"],
                "no staging directory left")
        // What `ensemble serve` will start from: the new members, and the
        // lease's whole TTL again.
        let storage = try DiskStorage.open(directory: configuration.dataDirectory + "/member")
        let snapshot = try storage.readSnapshot()
        try storage.close()
        #expect(snapshot.metadata.index == 1 && snapshot.metadata.confState.voters.count == 2)
        let restored = KVStateMachine()
        try restored.restore(snapshot.data)
        #expect(restored.members.sorted.map(\.name).sorted() == ["a", "b"])
        #expect(restored.members.clusterID == identity.clusterID)
        #expect(restored.leases.leases[7]?.checkpointTTL == 0)
        #expect(restored.store.revision == 2)
        #expect(throws: ConfigurationError.self, "the directory exists now") {
            try SnapshotRestore.restore(file: file, into: configuration)
        }
    }
}

