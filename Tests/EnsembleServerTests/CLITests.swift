import EnsembleServer
import Foundation
import Testing

/// The `ensemble` client commands against a dev cluster, as a user runs them.
@Suite(.serialized, .timeLimit(.minutes(1))) struct CLITests {
    func run(_ arguments: String...) async throws -> (Int32, String) {
        try await runProcess(try ProcessCluster.binaryPath(), arguments)
    }

    @Test func kvMemberAndStatusCommands() async throws {
        let f = try await DevClusterFixture()
        let endpoints = "--endpoints=\(f.cluster.endpoints)"
        var (code, output) = try await run("kv", "put", endpoints, "app/greeting", "hello")
        #expect(code == 0 && output.hasPrefix("OK (revision 2)"), "\(output)")
        _ = try await run("kv", "put", endpoints, "app/name", "ensemble")
        (code, output) = try await run("kv", "get", endpoints, "app/", "--prefix")
        #expect(output == "app/greeting\nhello\napp/name\nensemble\n", "\(output)")
        // An empty prefix is every key (etcdctl sends \0..\0; an empty key is refused).
        (code, output) = try await run("kv", "get", endpoints, "", "--prefix")
        #expect(code == 0 && output == "app/greeting\nhello\napp/name\nensemble\n", "\(output)")
        (code, output) = try await run("kv", "del", endpoints, "app/", "--prefix")
        #expect(output == "2\n", "\(output)")
        // A watch whose start is compacted away is canceled by the server:
        // etcdctl's lines and exit status 5, not a usage error (64).
        _ = try await etcdctl(endpoints: f.cluster.endpoints, ["compact", "4"])
        (code, output) = try await run("kv", "watch", endpoints, "app/greeting", "--rev=2")
        #expect(code == 5, "\(output)")
        #expect(output.contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)"), "\(output)")
        #expect(output.contains("Error: watch is canceled by the server"), "\(output)")
        (code, output) = try await run("member", "list", endpoints)
        #expect(output.split(separator: "\n").count == 3 && output.contains(", started, member-1, "), "\(output)")
        // etcdctl's lines, the ETCD_* block a joiner is started with.
        // (A cluster up for less than etcd's health interval, 5 s, answers "unhealthy cluster".)
        for _ in 0..<100 {
            (code, output) = try await run("member", "add", endpoints, "--command-timeout=10s", "e", "--learner", "--peer-urls=http://127.0.0.1:1")
            if code == 0 || !output.contains("unhealthy cluster") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(code == 0 && lines.first?.hasPrefix("Member ") == true && lines.first?.contains(" added to cluster ") == true, "\(output)")
        #expect(lines.contains("ETCD_NAME=\"e\"") && lines.contains("ETCD_INITIAL_ADVERTISE_PEER_URLS=\"http://127.0.0.1:1\""), "\(output)")
        #expect(lines.contains { $0.hasPrefix("ETCD_INITIAL_CLUSTER=\"") && $0.contains("member-1=http://127.0.0.1:") && $0.contains("e=http://127.0.0.1:1") }, "\(output)")
        #expect(lines.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "\(output)")
        (code, output) = try await run("kv", "get", endpoints, "--command-timeout=soon", "x")
        #expect(code != 0 && output.contains("is not a positive duration"), "\(output)")
        (code, output) = try await run("status", endpoints)
        #expect(output.split(separator: "\n").count == 4 && output.contains(" yes "), "\(output)")
        (code, output) = try await run("kv", "get", "--endpoints=127.0.0.1:9", "x")
        #expect(code != 0 && output.contains("no endpoint answered"), "\(output)")
        // A status with an endpoint that does not answer fails, as etcdctl's.
        (code, output) = try await run("status", "\(endpoints),127.0.0.1:9")
        #expect(code != 0 && output.contains("unreachable"), "\(output)")
        await f.close()
    }

    /// `bench --target-leader`, as etcd's: every request to the leader found
    /// among the endpoints.
    @Test func benchTargetsTheLeader() async throws {
        let f = try await DevClusterFixture()
        let (code, output) = try await run("bench", "--endpoints=\(f.cluster.endpoints)", "--target-leader", "--total=50", "put")
        #expect(code == 0 && output.contains("bench targets the leader, 127.0.0.1:\(f.leaderPort)"), "\(output)")
        #expect(output.contains("Requests/sec"), "\(output)")
        let (_, follower) = try await run("bench", "--endpoints=127.0.0.1:\(f.followerPort)", "--target-leader", "put")
        #expect(follower.contains("--target-leader: no endpoint is the leader (127.0.0.1:\(f.followerPort): follower of"), "\(follower)")
        await f.close()
    }

    /// A joiner (`--initial-cluster-state existing`) first asks the other
    /// members in --initial-cluster for the member list, as etcd 3.4 does;
    /// when none answers it stops at once with etcd's error rather than wait.
    @Test func aJoinerThatCannotReachTheClusterStopsWithEtcdsError() async throws {
        let ports = try freePortsForTests(2)
        let directory = NSTemporaryDirectory() + "ensemble-joiner-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let started = ContinuousClock.now
        let (status, output) = try await runProcess(try ProcessCluster.binaryPath(), [
            "serve", "--name", "z", "--data-dir", directory, "--initial-cluster-state", "existing",
            "--listen-client-urls", "http://127.0.0.1:\(ports[0])", "--advertise-client-urls", "http://127.0.0.1:\(ports[0])",
            "--listen-peer-urls", "http://127.0.0.1:\(ports[1])", "--initial-advertise-peer-urls", "http://127.0.0.1:\(ports[1])",
            "--initial-cluster", "a=http://127.0.0.1:1,z=http://127.0.0.1:\(ports[1])",
        ])
        #expect(status != 0 && ContinuousClock.now - started < .seconds(10))
        #expect(output.contains("cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs"), "\(output)")
    }

    /// `ensemble dev` over data made with other ports says so at once (its
    /// members would dial the old peer ports and never elect a leader).
    @Test func devRefusesPortsOtherThanItsDataWasMadeWith() async throws {
        let directory = NSTemporaryDirectory() + "ensemble-dev-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "client 2379,22379,32379 peer 2380,22380,32380\n".write(toFile: directory + "/dev-ports", atomically: true, encoding: .utf8)
        let (code, output) = try await run(
            "dev", "--data-dir", directory, "--client-ports", "12379, 22379, 32379", "--peer-ports", "12380,22380,32380")
        #expect(code != 0 && output.contains("was made with ports client 2379,22379,32379 peer 2380,22380,32380"), "\(output)")
    }

    /// etcd's `unix://host:port` client URLs: a socket file named `host:port`
    /// in the working directory, which etcdctl reaches the same way; it goes
    /// when the member stops.
    @Test func aUnixSocketClientURLServesEtcdctl() async throws {
        let ports = try freePortsForTests(3)
        let directory = NSTemporaryDirectory() + "ensemble-unix-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = "localhost:\(ports[2])"
        let serve = [
            try ProcessCluster.binaryPath(), "serve", "--name", "u", "--data-dir", "data",
            "--listen-client-urls", "http://127.0.0.1:\(ports[0]),unix://\(socket)",
            "--advertise-client-urls", "http://127.0.0.1:\(ports[0])",
            "--listen-peer-urls", "http://127.0.0.1:\(ports[1])", "--initial-advertise-peer-urls", "http://127.0.0.1:\(ports[1])",
        ].map { "'\($0)'" }.joined(separator: " ")
        let process = try launchProcess("/bin/sh", ["-c", "cd '\(directory)' && exec \(serve)"])
        defer { if process.isRunning { process.terminate() } }
        func etcdctl(_ arguments: String) async throws -> (Int32, String) {
            try await runProcess("/bin/sh", ["-c", "cd '\(directory)' && etcdctl --endpoints=unix://\(socket) --command-timeout=3s \(arguments) 2>&1"])
        }
        var (code, output) = (Int32(1), "")
        for _ in 0..<100 where code != 0 {
            (code, output) = try await etcdctl("put over unix")
            if code != 0 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(code == 0 && output == "OK\n", "\(output)")
        (code, output) = try await runProcess("/usr/bin/etcdctl", ["--endpoints=127.0.0.1:\(ports[0])", "get", "over", "--print-value-only"])
        #expect(code == 0 && output == "unix\n", "\(output)")
        // A second member on the same socket path is refused, as Go's listener refuses it.
        let others = try freePortsForTests(2)
        let second = [
            try ProcessCluster.binaryPath(), "serve", "--name", "v", "--data-dir", "data2",
            "--listen-client-urls", "unix://\(socket)", "--advertise-client-urls", "http://127.0.0.1:\(others[0])",
            "--listen-peer-urls", "http://127.0.0.1:\(others[1])", "--initial-advertise-peer-urls", "http://127.0.0.1:\(others[1])",
        ].map { "'\($0)'" }.joined(separator: " ")
        (code, output) = try await runProcess("/bin/sh", ["-c", "cd '\(directory)' && exec \(second) 2>&1"])
        #expect(code != 0 && output.contains("listen unix \(socket): bind: address already in use"), "\(output)")
        (code, output) = try await etcdctl("get over --print-value-only")
        #expect(code == 0 && output == "unix\n", "the first member still serves its socket: \(output)")
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(!FileManager.default.fileExists(atPath: directory + "/" + socket), "the socket file is removed")
    }

    /// etcd's ETCD_<FLAG> environment variables, with etcd 3.4's rules.
    @Test func serveReadsEtcdsEnvironmentVariables() async throws {
        let binary = try ProcessCluster.binaryPath()
        var (code, output) = try await runProcess("/usr/bin/env", ["ETCD_HEARTBEAT_INTERVAL=0", "ETCD_NOT_A_FLAG=1", binary, "serve", "--name=x"])
        #expect(code != 0 && output.contains("--heartbeat-interval must be >0 (set to 0ms)"), "\(output)")
        #expect(output.contains("recognized and used environment variable ETCD_HEARTBEAT_INTERVAL=0"), "\(output)")
        #expect(output.contains("unrecognized environment variable ETCD_NOT_A_FLAG=1"), "\(output)")
        (code, output) = try await runProcess("/usr/bin/env", ["ETCD_NAME=y", binary, "serve", "--name=x"])
        #expect(code != 0 && output.contains("conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag"), "\(output)")
        // etcd settings Ensemble cannot honour are refused, not ignored
        // (ignoring discovery would found a one-member cluster on each node).
        (code, output) = try await runProcess("/usr/bin/env", ["ETCD_DISCOVERY_SRV=example.com", binary, "serve", "--name=x"])
        #expect(code != 0 && output.contains("ETCD_DISCOVERY_SRV=example.com: --discovery-srv is not supported by Ensemble"), "\(output)")
        // With a config file, etcd reads no other variable.
        let file = NSTemporaryDirectory() + "ensemble-env-\(UUID().uuidString).yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try "name: x\nheartbeat-interval: 0\n".write(toFile: file, atomically: true, encoding: .utf8)
        (code, output) = try await runProcess("/usr/bin/env", ["ETCD_NAME=y", "ETCD_CONFIG_FILE=\(file)", binary, "serve"])
        #expect(code != 0 && output.contains("--heartbeat-interval must be >0") && !output.contains("ETCD_NAME"), "\(output)")
        // A bare boolean no-op flag does not take the next flag as its value.
        (code, output) = try await run("serve", "--name=x", "--initial-election-tick-advance", "--heartbeat-interval=0")
        #expect(code != 0 && output.contains("--heartbeat-interval must be >0"), "\(output)")
        // etcd flags with no effect here are taken, with a note (an etcd unit file runs unchanged).
        (code, output) = try await runProcess(
            "/usr/bin/env", ["ETCD_MAX_TXN_OPS=256", binary, "serve", "--name=x", "--enable-v2", "--max-wals", "5", "--heartbeat-interval=0"])
        #expect(code != 0 && output.contains("--heartbeat-interval must be >0"), "parsed past the ignored flags: \(output)")
        #expect(output.contains("--max-wals is an etcd flag with no effect in Ensemble; ignored"), "\(output)")
        #expect(output.contains("--max-txn-ops is an etcd flag with no effect in Ensemble; ignored"), "\(output)")
        (code, output) = try await runProcess(
            "/usr/bin/env",
            ["ETCD_CLIENT_CERT_AUTH=true", "ETCD_AUTO_TLS=true", binary, "serve", "--name=x", "--listen-client-urls=https://127.0.0.1:2379",
             "--advertise-client-urls=https://127.0.0.1:2379"])
        #expect(code != 0 && output.contains("--client-cert-auth needs --trusted-ca-file"), "\(output)")
    }

    /// etcd's boolean flags written as Go's flag package allows (kubeadm's manifests do).
    @Test func serveTakesBooleanFlagsWithAValue() async throws {
        var (code, output) = try await run(
            "serve", "--name=x", "--data-dir=/nonexistent/x", "--client-cert-auth=true",
            "--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379", "--auto-tls")
        #expect(code != 0 && output.contains("--client-cert-auth needs --trusted-ca-file"), "\(output)")
        (code, output) = try await run("serve", "--name=x", "--client-cert-auth=false", "--peer-client-cert-auth=false", "--election-timeout=100")
        #expect(code != 0 && output.contains("--election-timeout[100ms] should be at least as 5 times as --heartbeat-interval[100ms]"), "\(output)")
        (code, output) = try await run("serve", "--name=x", "--heartbeat-interval=0")
        #expect(code != 0 && output.contains("--heartbeat-interval must be >0 (set to 0ms)"), "\(output)")
        (code, output) = try await run("serve", "--name=x", "--election-timeout=60000")
        #expect(code != 0 && output.contains("--election-timeout[60000ms] is too long, and should be set less than 50000ms"), "\(output)")
        (code, output) = try await run("serve", "--name=x", "--listen-client-urls=http://127.0.0.1:1")
        #expect(code != 0 && output.contains("--advertise-client-urls is required when --listen-client-urls is set explicitly"), "\(output)")
        (code, output) = try await run("serve", "--name=x", "--log-level=loud")
        #expect(code != 0 && output.contains("--log-level must be debug, info, warn, error, panic or fatal"), "\(output)")
        (code, output) = try await run("serve", "--name=x", "--logger=loud")
        #expect(code != 0 && output.contains("--logger must be capnslog or zap"), "\(output)")
        (code, output) = try await run("serve", "--name=x", "--log-outputs=/nonexistent/dir/log")
        #expect(code != 0 && output.contains("--log-outputs: cannot open '/nonexistent/dir/log'"), "\(output)")
    }
}
