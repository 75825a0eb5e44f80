import Foundation

/// A real etcd 3.4 cluster (Debian's etcd-server) of three processes (or `size`) on
/// loopback, for comparing Ensemble with the real thing. Missing etcd is a
/// failure, never a skip: CI installs it.
final class EtcdCluster {
    let directory = NSTemporaryDirectory() + "etcd-compat-\(UUID().uuidString)"
    private var processes: [Process] = []
    let clientPorts: [Int]

    /// `restoring`: a backup file each member's data directory is first
    /// restored from with the real `etcdctl snapshot restore`.
    init(size: Int = 3, restoring backup: String? = nil) async throws {
        guard let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw EtcdMissing()
        }
        let ports = try freePortsForTests(2 * size)
        let clients = Array(ports[0..<size])
        let peers = Array(ports[size..<(2 * size)])
        clientPorts = clients
        let token = "compat-\(UUID().uuidString)"
        let initial = (0..<size).map { "e\($0)=http://127.0.0.1:\(peers[$0])" }.joined(separator: ",")
        if let backup {
            for i in 0..<size {
                let (status, output) = try etcdctlBlocking(endpoints: "127.0.0.1:\(clients[i])", [
                    "snapshot", "restore", backup, "--name", "e\(i)", "--data-dir", "\(directory)/e\(i)",
                    "--initial-cluster", initial, "--initial-cluster-token", token,
                    "--initial-advertise-peer-urls", "http://127.0.0.1:\(peers[i])",
                ])
                guard status == 0 else { throw EtcdMissing(reason: "etcdctl snapshot restore failed: \(output.suffix(1500))") }
            }
        }
        for i in 0..<size {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: etcd)
            process.arguments = [
                "--name", "e\(i)", "--data-dir", "\(directory)/e\(i)",
                "--listen-client-urls", "http://127.0.0.1:\(clients[i])",
                "--advertise-client-urls", "http://127.0.0.1:\(clients[i])",
                "--listen-peer-urls", "http://127.0.0.1:\(peers[i])",
                "--initial-advertise-peer-urls", "http://127.0.0.1:\(peers[i])",
                "--initial-cluster", initial, "--initial-cluster-token", token,
                "--heartbeat-interval", "25", "--election-timeout", "250",
            ]
            process.environment = ["PATH": "/usr/bin:/bin"]
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            _ = FileManager.default.createFile(atPath: "\(directory)/e\(i).log", contents: nil)
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(directory)/e\(i).log"))
            process.standardOutput = log
            process.standardError = log
            try process.run()
            processes.append(process)
        }
        // Healthy once a quorum answers a linearizable read.
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if let (status, _) = try? await etcdctl(endpoints: endpoints, ["get", "health-probe"]), status == 0 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        let log = (try? String(contentsOfFile: "\(directory)/e0.log", encoding: .utf8)) ?? ""
        stop()
        throw EtcdMissing(reason: "etcd did not become healthy within 20 s; e0's log ends:\n\(log.suffix(1500))")
    }

    var endpoints: String { clientPorts.map { "127.0.0.1:\($0)" }.joined(separator: ",") }

    func stop() {
        for process in processes where process.isRunning { process.terminate() }
        for process in processes { process.waitUntilExit() }
        processes = []
        try? FileManager.default.removeItem(atPath: directory)
    }
}

struct EtcdMissing: Error, CustomStringConvertible {
    var reason = "etcd not found: apt-get install -y etcd-server"
    var description: String { reason }
}

/// ``etcdctlBlocking(endpoints:_:input:)`` on a thread of its own: a test
/// that blocked one of the cooperative pool's two threads for the seconds an
/// etcdctl run can take starved the in-process members sharing the pool (a
/// keep-alive's task once waited 2.6 s to start, and its lease expired).
func etcdctl(endpoints: String, _ arguments: [String], input: String? = nil) async throws -> (status: Int32, output: String) {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try etcdctlBlocking(endpoints: endpoints, arguments, input: input) }) }.start()
    }
}

/// etcdctl against `endpoints`, with optional standard input (txn reads it);
/// blocks the calling thread until it exits.
func etcdctlBlocking(endpoints: String, _ arguments: [String], input: String? = nil) throws -> (status: Int32, output: String) {
    let path = ["/usr/bin/etcdctl", "/usr/local/bin/etcdctl"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let path else { throw EtcdctlMissing() }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = ["--endpoints=\(endpoints)", "--command-timeout=5s"] + arguments
    process.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let stdin = Pipe()
    process.standardInput = stdin
    try process.run()
    if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
    try? stdin.fileHandleForWriting.close()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
