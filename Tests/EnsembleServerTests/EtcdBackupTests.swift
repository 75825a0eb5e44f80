import EnsembleServer
import Foundation
import Testing

/// Backups cross between etcd 3.4 and Ensemble in both directions, with the
/// real tools: a backup `etcdctl snapshot save` took from Ensemble passes
/// `etcdctl snapshot status` (bbolt's integrity check) and `etcdctl snapshot
/// restore` makes an etcd cluster of it; one taken from etcd is restored by
/// `ensemble snapshot restore`. Either way the restored cluster answers the
/// same reads as the one backed up: the keys, their history, revisions and
/// versions, the compaction point, the leases. One member each (the format
/// does not depend on the cluster's size; `SnapshotRestoreTests` restores
/// into three): these run alongside the whole suite.
@Suite(.serialized, .timeLimit(.minutes(3))) struct EtcdBackupTests {
    /// Writes a history with overwrites, a deletion, a value larger than a
    /// page, a lease with a key, and a compaction in the middle; returns the
    /// reads to compare (headers aside, whose ids differ between clusters).
    static func writeHistory(_ endpoint: String) async throws -> (reads: [[String]], revision: Int) {
        func run(_ arguments: [String]) async throws -> String {
            let (status, output) = try await etcdctl(endpoints: endpoint, arguments)
            #expect(status == 0, "etcdctl \(arguments): \(output)")
            return output
        }
        _ = try await run(["put", "config/a", "1"])
        _ = try await run(["put", "config/a", "2"])
        _ = try await run(["put", "config/b", "x"])
        _ = try await run(["del", "config/b"])
        _ = try await run(["put", "blob", String(repeating: "0123456789", count: 1_000)])
        let granted = try await run(["lease", "grant", "600"])
        let lease = try #require(granted.firstMatch(of: /lease ([0-9a-f]+) granted/).map { String($0.1) }, "\(granted)")
        _ = try await run(["put", "--lease=\(lease)", "session", "alive"])
        _ = try await run(["compact", "3"])
        _ = try await run(["put", "config/a", "3"])
        for i in 0..<50 { _ = try await run(["put", "many/\(i)", String(repeating: "v", count: 200)]) }
        let status = try await run(["endpoint", "status", "-w", "json"])
        let revision = try #require(status.firstMatch(of: /"revision":(\d+)/).map { Int($0.1) ?? 0 })
        let reads = [
            ["get", "", "--from-key", "-w", "json"],
            ["get", "config/a", "--rev=3", "-w", "json"],
            ["get", "config/a", "--rev=2"],
            ["get", "config/b", "--rev=4", "-w", "json"],
            ["get", "many/", "--prefix", "--keys-only", "--limit=5", "--sort-by=MODIFY", "--order=DESCEND"],
            ["lease", "list"],
            ["lease", "timetolive", lease, "--keys"],
        ]
        return (reads, revision)
    }

    /// Every read's output on `endpoint`, headers and TTLs (which count
    /// down) left out.
    static func answers(_ reads: [[String]], on endpoint: String) async throws -> [String] {
        var outputs: [String] = []
        for read in reads {
            let (_, output) = try await etcdctl(endpoints: endpoint, read)
            outputs.append(
                output.replacing(/"header":\{[^}]*\},?/, with: "").replacing(/remaining\(\d+s\)/, with: "remaining")
                    .replacing(/\{"level".*\n/, with: ""))
        }
        // Answers, not errors: every key with its value, the history, the lease's key.
        #expect(outputs[0].contains("\"key\":\"Y29uZmlnL2E=\"") && outputs[0].contains("\"count\":53"), "\(outputs[0])")
        #expect(outputs[1].contains("\"value\":\"Mg==\""), "\(outputs[1])")
        #expect(outputs[2].contains("required revision has been compacted"), "\(outputs[2])")
        #expect(outputs[6].contains("attached keys([session])"), "\(outputs[6])")
        return outputs
    }

    @Test func anEnsembleBackupRestoresIntoEtcd() async throws {
        let backup = NSTemporaryDirectory() + "ensemble-to-etcd-\(UUID().uuidString).db"
        defer { try? FileManager.default.removeItem(atPath: backup) }
        let ensemble = try ProcessCluster(size: 1)
        defer { ensemble.stop() }
        let leader = try #require(await ensemble.leader(), "no leader; log:\n\(ensemble.log(0))")
        let endpoint = "127.0.0.1:\(ensemble.members[leader].clientPort)"
        let (reads, revision) = try await Self.writeHistory(endpoint)
        let (saved, output) = try await etcdctl(endpoints: endpoint, ["snapshot", "save", backup])
        #expect(saved == 0, "\(output)")

        // bbolt's own reader, integrity check included, and ours agree.
        let (checked, status) = try await etcdctl(endpoints: endpoint, ["snapshot", "status", backup, "-w", "json"])
        let ours = try SnapshotRestore.status(file: backup)
        #expect(checked == 0 && status.contains("\"revision\":\(revision),"), "\(status)")
        #expect(
            status.contains("{\"hash\":\(ours.hash),\"revision\":\(ours.revision),\"totalKey\":\(ours.totalKeys),\"totalSize\":\(ours.totalSize)}"),
            "etcdctl: \(status), ensemble: \(ours)")

        let etcd = try await EtcdCluster(size: 1, restoring: backup)
        defer { etcd.stop() }
        let expected = try await Self.answers(reads, on: endpoint)
        let restored = try await Self.answers(reads, on: etcd.endpoints)
        for (read, (want, got)) in zip(reads, zip(expected, restored)) {
            #expect(want == got, "\(read): Ensemble \(want), restored etcd \(got)")
        }
        // The restored etcd goes on from the backup's revision.
        let (_, put) = try await etcdctl(endpoints: etcd.endpoints, ["put", "after", "1", "-w", "json"])
        #expect(put.contains("\"revision\":\(revision + 1)"), "\(put)")
    }

    @Test func anEtcdBackupRestoresIntoEnsemble() async throws {
        let backup = NSTemporaryDirectory() + "etcd-to-ensemble-\(UUID().uuidString).db"
        defer { try? FileManager.default.removeItem(atPath: backup) }
        let etcd = try await EtcdCluster(size: 1)
        defer { etcd.stop() }
        let endpoint = "127.0.0.1:\(etcd.clientPorts[0])"
        let (reads, revision) = try await Self.writeHistory(endpoint)
        let (saved, output) = try await etcdctl(endpoints: endpoint, ["snapshot", "save", backup])
        #expect(saved == 0, "\(output)")
        let (_, status) = try await etcdctl(endpoints: endpoint, ["snapshot", "status", backup, "-w", "json"])
        let ours = try SnapshotRestore.status(file: backup)
        #expect(
            status.contains("{\"hash\":\(ours.hash),\"revision\":\(ours.revision),\"totalKey\":\(ours.totalKeys),\"totalSize\":\(ours.totalSize)}"),
            "etcdctl: \(status), ensemble: \(ours)")

        let binary = try ProcessCluster.binaryPath()
        let ensemble = try ProcessCluster(size: 1) { cluster in
            for member in cluster.members {
                let (code, output) = try runProcessBlocking(binary, [
                    "snapshot", "restore", backup, "--name", member.name, "--data-dir", "\(cluster.directory)/\(member.name)",
                    "--initial-cluster", cluster.initialCluster, "--initial-cluster-token", "from-etcd",
                    "--initial-advertise-peer-urls", "http://\(member.host):\(member.peerPort)",
                ])
                #expect(code == 0 && output.contains("restored revision \(revision)"), "\(output)")
            }
        }
        defer { ensemble.stop() }
        #expect(await ensemble.everyMemberServes(), "a restored member did not start; log:\n\(ensemble.log(0))")
        let endpoints = ensemble.endpoints.map { "127.0.0.1:\($0)" }.joined(separator: ",")
        let expected = try await Self.answers(reads, on: endpoint)
        let restored = try await Self.answers(reads, on: endpoints)
        for (read, (want, got)) in zip(reads, zip(expected, restored)) {
            #expect(want == got, "\(read): etcd \(want), restored Ensemble \(got)")
        }
        let (_, put) = try await etcdctl(endpoints: endpoints, ["put", "after", "1", "-w", "json"])
        #expect(put.contains("\"revision\":\(revision + 1)"), "\(put)")
    }
}
