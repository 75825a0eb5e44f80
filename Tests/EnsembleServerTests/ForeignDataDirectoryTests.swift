import EnsembleServer
import Foundation
import Testing

/// A member pointed at an etcd data directory (a binary swapped in an etcd
/// unit file) must refuse it and leave etcd's files alone: etcd's WAL has
/// our segment names, and its first frame reads as a torn segment of ours,
/// which recovery would delete (configuration review finding).
@Suite(.timeLimit(.minutes(1))) struct ForeignDataDirectoryTests {
    @Test func anEtcdDataDirectoryIsRefusedAndLeftAsItIs() async throws {
        let directory = NSTemporaryDirectory() + "ensemble-foreign-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ports = try freePortsForTests(2)
        let data = directory + "/etcd-data"
        // A real etcd 3.4 data directory: started, one write, stopped.
        let etcd = try launchProcess("/usr/bin/etcd", [
            "--name", "a", "--data-dir", data,
            "--listen-client-urls", "http://127.0.0.1:\(ports[0])", "--advertise-client-urls", "http://127.0.0.1:\(ports[0])",
            "--listen-peer-urls", "http://127.0.0.1:\(ports[1])", "--initial-advertise-peer-urls", "http://127.0.0.1:\(ports[1])",
            "--initial-cluster", "a=http://127.0.0.1:\(ports[1])",
        ])
        var written = false
        for _ in 0..<50 where !written {
            try await Task.sleep(for: .milliseconds(100))
            written = (try? await runProcess("/usr/bin/etcdctl", ["--endpoints=127.0.0.1:\(ports[0])", "put", "k", "v"]))?.status == 0
        }
        etcd.terminate()
        etcd.waitUntilExit()
        #expect(written, "etcd did not start")
        let wal = data + "/member/wal"
        let before = try FileManager.default.contentsOfDirectory(atPath: wal).sorted()
        #expect(!before.isEmpty)

        let c = singleMember("a", directory: data, clientPort: ports[0], peerPort: ports[1])
        do {
            let member = try await EnsembleMember.start(c)
            Issue.record("started on etcd's data directory")
            await member.shutdown()
        } catch {
            #expect(error is ConfigurationError && "\(error)".contains("is an etcd data directory"), "\(error)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: wal).sorted() == before, "etcd's WAL was touched")
    }
}
