import EnsembleAPI
import EnsembleClient
import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// Three real `ensemble serve` processes on loopback, for fault tests:
/// members can be killed (SIGKILL), paused (SIGSTOP/SIGCONT) and restarted
/// with the same command line, as an operator would.
final class ProcessCluster: @unchecked Sendable {
    struct Member {
        var name: String
        var host = "127.0.0.1"
        var clientPort: Int
        var peerPort: Int
        var process: Process?
        /// `--advertise-client-urls`, when not the URL it listens on.
        var advertisedClientURL: String?
        /// The network namespace the member runs in (``NetworkNamespaces``).
        var namespace: String?
        /// Started with `--initial-cluster-state existing` (after `member add`).
        var joining = false
    }

    /// Flags every member gets, after the common ones.
    var extraArguments: [String] = []

    let directory = NSTemporaryDirectory() + "ensemble-processes-\(UUID().uuidString)"
    private(set) var members: [Member]
    let binary: String
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// The `ensemble` executable built next to the tests (`swift build`).
    static func binaryPath() throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for candidate in [".build/debug/ensemble", ".build/release/ensemble"] {
            let path = root.appendingPathComponent(candidate).path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw EtcdMissing(reason: "the ensemble executable is not built: run `swift build` first (scripts/test does)")
    }

    /// The network, when members run in namespaces of their own.
    let network: NetworkNamespaces?

    /// `network`: run each member in its own namespace, so links between
    /// members can be cut while clients (here, in the root namespace) still
    /// reach every member. `beforeStart` runs once the members are named and
    /// their directory exists, before any starts.
    init(
        network: NetworkNamespaces? = nil, size: Int = 3, extraArguments: [String] = [],
        beforeStart: (ProcessCluster) throws -> Void = { _ in }
    ) throws {
        self.extraArguments = extraArguments
        binary = try Self.binaryPath()
        self.network = network
        if let network {
            members = (0..<3).map {
                Member(name: "p\($0)", host: network.address(of: $0), clientPort: 2379, peerPort: 2380, namespace: network.name(of: $0))
            }
        } else {
            let ports = try freePortsForTests(2 * size)
            members = (0..<size).map { Member(name: "p\($0)", clientPort: ports[$0], peerPort: ports[size + $0]) }
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try beforeStart(self)
        for i in members.indices { try start(i) }
    }

    var endpoints: [Int] { members.map(\.clientPort) }
    var hosts: [String] { members.map(\.host) }

    /// `--initial-cluster`'s value.
    var initialCluster: String { members.map { "\($0.name)=http://\($0.host):\($0.peerPort)" }.joined(separator: ",") }

    func arguments(_ i: Int) -> [String] {
        let initial = initialCluster
        let m = members[i]
        return [
            "serve", "--name", m.name, "--data-dir", "\(directory)/\(m.name)",
            "--listen-client-urls", "http://\(m.host):\(m.clientPort)",
            "--advertise-client-urls", m.advertisedClientURL ?? "http://\(m.host):\(m.clientPort)",
            "--listen-peer-urls", "http://\(m.host):\(m.peerPort)", "--initial-advertise-peer-urls", "http://\(m.host):\(m.peerPort)",
            "--initial-cluster", initial, "--heartbeat-interval", "50", "--election-timeout", "500",
        ] + (m.joining ? ["--initial-cluster-state", "existing"] : []) + extraArguments
    }

    /// Marks member `i` as one added with `member add`, to start as a joiner.
    func markJoining(_ i: Int) { members[i].joining = true }

    /// Starts member `i` (again) with its command line; output goes to `<name>.log`.
    func start(_ i: Int) throws {
        let process = Process()
        if let namespace = members[i].namespace, let network {
            process.executableURL = URL(fileURLWithPath: network.ip)
            process.arguments = ["netns", "exec", namespace, binary] + arguments(i)
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments(i)
        }
        let logPath = "\(directory)/\(members[i].name).log"
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        members[i].process = process
    }

    /// Member `i` advertises `url` as its client URL (before it starts).
    func advertiseClientURL(_ i: Int, _ url: String) {
        members[i].advertisedClientURL = url
    }

    func signal(_ i: Int, _ signal: Int32) {
        guard let process = members[i].process, process.isRunning else { return }
        kill(process.processIdentifier, signal)
        if signal == SIGKILL {
            process.waitUntilExit()
            members[i].process = nil
        }
    }

    func log(_ i: Int) -> String {
        (try? String(contentsOfFile: "\(directory)/\(members[i].name).log", encoding: .utf8)) ?? ""
    }

    func stop() {
        for i in members.indices {
            if let process = members[i].process, process.isRunning {
                kill(process.processIdentifier, SIGCONT)
                process.terminate()
                process.waitUntilExit()
            }
            members[i].process = nil
        }
        try? group.syncShutdownGracefully()
        try? FileManager.default.removeItem(atPath: directory)
        network?.remove()
    }

    /// Member `i`'s Maintenance.Status, or nil if it does not answer within 1 s.
    func status(_ i: Int) async -> Etcdserverpb_StatusResponse? {
        guard let client = try? await EtcdClient.connect(host: members[i].host, port: members[i].clientPort, group: group)
        else { return nil }
        defer { Task { await client.connection.close() } }
        return try? await client.call(
            "/etcdserverpb.Maintenance/Status", Etcdserverpb_StatusRequest(), as: Etcdserverpb_StatusResponse.self,
            timeout: .seconds(1))
    }

    /// The index of the member that leads, asked of every live member.
    /// Waits until every running member answers Status (a member still
    /// replaying its log has not bound its client port yet); false on timeout.
    func everyMemberServes(timeout: Duration = .seconds(15)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var all = true
            for (i, member) in members.enumerated() where member.process?.isRunning == true {
                if await status(i) == nil { all = false }
            }
            if all { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    func leader(timeout: Duration = .seconds(15)) async -> Int? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            for (i, member) in members.enumerated() where member.process?.isRunning == true {
                if let status = await status(i), status.leader != 0, status.leader == status.header.memberID { return i }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return nil
    }
}

/// A client of the whole cluster: one connection per member, remade when it
/// breaks; each call goes to the next member that answers.
final class ClusterClient: Sendable {
    private let ports: [Int]
    private let hosts: [String]
    private let group: any EventLoopGroup
    private let connections = Mutex<[Int: EtcdClient]>([:])
    private let next = Atomic<Int>(0)

    init(ports: [Int], hosts: [String]? = nil, group: any EventLoopGroup) {
        self.ports = ports
        self.hosts = hosts ?? ports.map { _ in "127.0.0.1" }
        self.group = group
    }

    /// Which member the next call goes to, and its client.
    func client(_ attempt: Int = 0) async -> (Int, EtcdClient?) {
        let index = (next.add(1, ordering: .relaxed).oldValue + attempt) % ports.count
        if let existing = connections.withLock({ $0[index] }) { return (index, existing) }
        let made = try? await EtcdClient.connect(host: hosts[index], port: ports[index], group: group)
        if let made { connections.withLock { $0[index] = made } }
        return (index, made)
    }

    /// Forgets a broken connection so the next call reconnects.
    func failed(_ index: Int) {
        let broken = connections.withLock { $0.removeValue(forKey: index) }
        if let broken { Task { await broken.connection.close() } }
    }

    func close() async {
        for client in connections.withLock({ Array($0.values) }) { await client.connection.close() }
    }
}
