import EnsembleServer
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// The client port also answers plain HTTP/1.1, as etcd's does: Prometheus
/// `/metrics` with etcd's metric names, `/health`, `/version`.
@Suite(.serialized, .timeLimit(.minutes(1))) struct HTTPEndpointTests {
    func get(_ port: Int, _ path: String) async throws -> (Int, String) { try await httpGet(port, path) }

    @Test func metricsHealthAndVersionOnTheClientPort() async throws {
        let f = try await DevClusterFixture()
        for i in 0..<5 { _ = try await f.run(f.followerPort, "put", "k\(i)", "v") }
        let (code, metrics) = try await get(f.leaderPort, "/metrics")
        #expect(code == 200)
        for name in ["etcd_server_has_leader 1", "etcd_server_is_leader 1", "etcd_server_leader_changes_seen_total",
                     "etcd_disk_wal_fsync_duration_seconds_bucket", "etcd_mvcc_db_total_size_in_bytes",
                     "etcd_debugging_mvcc_keys_total 5", "etcd_server_proposals_committed_total",
                     "etcd_server_quota_backend_bytes 2147483648", "etcd_mvcc_db_total_size_in_use_in_bytes",
                     "etcd_debugging_mvcc_current_revision 6", "etcd_debugging_mvcc_compact_revision -1",
                     #"etcd_server_version{server_version="3.4.0"} 1"#, #"etcd_cluster_version{cluster_version="3.4"} 1"#,
                     #"etcd_server_id{server_id=""#, "etcd_mvcc_put_total 5", "etcd_mvcc_delete_total 0",
                     "etcd_disk_wal_write_bytes_total", #"etcd_network_peer_sent_bytes_total{To=""#,
                     #"etcd_network_peer_received_bytes_total{From=""#, #"etcd_network_active_peers{Local=""#,
                     #"etcd_network_peer_round_trip_time_seconds_bucket{To=""#] {
            #expect(metrics.contains(name), "\(name) missing from:\n\(metrics.prefix(3000))")
        }
        // Every member applies the puts; the follower received them from its clients.
        let (_, applied) = try await get(f.followerPort, "/metrics")
        #expect(applied.contains("etcd_mvcc_put_total 5"))
        // Scrapes at once (an HA pair of Prometheus servers) count nothing twice.
        let port = f.followerPort
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<20 { group.addTask { _ = try? await httpGet(port, "/metrics") } }
        }
        let (_, again) = try await get(f.followerPort, "/metrics")
        #expect(again.contains("etcd_mvcc_put_total 5"), "\(again.split(separator: "\n").filter { $0.hasPrefix("etcd_mvcc_") })")
        let received = #"grpc_server_msg_received_total{grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_type="unary"} 5"#
        let sent = #"grpc_server_msg_sent_total{grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_type="unary"} 5"#
        #expect(applied.contains(received) && applied.contains(sent), "\(applied.prefix(3000))")
        #expect(!applied.contains("etcd_network_client_grpc_received_bytes_total 0\n"))
        _ = try await get(f.leaderPort, "/health")
        let (_, afterHealth) = try await get(f.leaderPort, "/metrics")
        #expect(afterHealth.contains("etcd_server_health_success 1"))
        // The puts were served by the follower's gRPC server.
        let (_, follower) = try await get(f.followerPort, "/metrics")
        let put = #"grpc_server_handled_total{grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_type="unary",grpc_code="OK"} 5"#
        #expect(follower.contains(put), "\(follower.prefix(3000))")
        let started = #"grpc_server_started_total{grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_type="unary"} 5"#
        #expect(follower.contains(started), "\(follower.prefix(3000))")
        // clientv3 sends its API version with every call.
        #expect(follower.contains(#"etcd_server_client_requests_total{type="unary",client_api_version="3.4"} "#), "\(follower.prefix(3000))")
        for name in ["\netcd_server_heartbeat_send_failures_total ", #"etcd_network_peer_received_failures_total{From=""#] {
            #expect(metrics.contains(name), "\(name) missing")
        }
        // A watch whose client goes away is handled, Canceled, as grpc-go's
        // interceptor counts it: started - handled stays the calls in flight.
        _ = try await runProcess("/usr/bin/timeout", ["1", "etcdctl", "--endpoints=127.0.0.1:\(f.leaderPort)", "watch", "w"])
        let watch = #"{grpc_service="etcdserverpb.Watch",grpc_method="Watch",grpc_type="bidi_stream""#
        var after = ""
        for _ in 0..<40 {
            (_, after) = try await get(f.leaderPort, "/metrics")
            if after.contains("grpc_server_handled_total\(watch),grpc_code=\"Canceled\"} 1") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(after.contains("grpc_server_started_total\(watch)} 1"), "\(after.prefix(4000))")
        // Every code's series exists before it occurs, as go-grpc-prometheus makes them.
        #expect(after.contains(#"grpc_server_handled_total{grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_type="unary",grpc_code="DataLoss"} 0"#))
        #expect(after.contains("grpc_server_handled_total\(watch),grpc_code=\"Canceled\"} 1"), "\(after.prefix(4000))")
        let (healthCode, health) = try await get(f.followerPort, "/health")
        #expect(healthCode == 200 && health == #"{"health":"true"}"#, "\(health)")
        let (_, version) = try await get(f.followerPort, "/version")
        #expect(version.contains(#""etcdserver":"3.4.0""#), "\(version)")
        let (missing, _) = try await get(f.followerPort, "/nope")
        #expect(missing == 404)
        // Methods as etcd's handlers take them: GET only for /health and
        // /version (405 naming GET), any for /metrics, 404 before 405.
        for (method, path, code) in [("POST", "/health", 405), ("HEAD", "/version", 405), ("POST", "/metrics", 200), ("POST", "/nope", 404)] {
            let url = "http://127.0.0.1:\(f.followerPort)\(path)"
            // `-I` for HEAD: curl then expects no body after the headers.
            let (_, answer) = try await runProcess("/usr/bin/curl", method == "HEAD" ? ["-sS", "-I", url] : ["-sS", "-i", "-X", method, url])
            #expect(answer.hasPrefix("HTTP/1.1 \(code)"), "\(method) \(path): \(answer.prefix(300))")
            if code == 405 { #expect(answer.contains("Allow: GET"), "\(answer.prefix(300))") }
        }
        // An HTTP/1.0 request (no keep-alive) is answered and the connection closed.
        let closed = try await runProcess(
            "/bin/bash", ["-c", "exec 3<>/dev/tcp/127.0.0.1/\(f.followerPort); printf 'GET /version HTTP/1.0\\r\\n\\r\\n' >&3; timeout 3 cat <&3"])
        #expect(closed.status == 0 && closed.output.contains("Connection: close") && closed.output.contains("etcdserver"), "\(closed)")
        // gRPC on the same port still works.
        let (status, output) = try await f.run(f.leaderPort, "get", "k0", "--print-value-only")
        #expect(status == 0 && output == "v\n")
        // The Go client's process metrics, which etcdctl check datascale reads.
        let resident = metrics.firstMatch(of: /\nprocess_resident_memory_bytes ([0-9.e+]+)\n/).flatMap { Double($0.1) } ?? 0
        #expect(resident > 1_000_000, "\(metrics.prefix(3000))")
        for name in ["process_virtual_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
                     "process_start_time_seconds"] {
            #expect(metrics.contains("\n\(name) "), "\(name) missing")
        }
        let (checked, datascale) = try await f.run(f.leaderPort, "check", "datascale", "--load=s", "--auto-compact", "--auto-defrag")
        #expect(checked == 0 && datascale.contains("PASS: Approximate system memory used"), "\(datascale.suffix(600))")
        await f.close()
    }

    /// `--listen-metrics-urls` (kubeadm probes /health there): a port with the
    /// plain HTTP endpoints only, no gRPC.
    /// grpc-go's checks before a call starts, seen by a real HTTP/2 client:
    /// a content type that is not gRPC's gets 415 and INVALID_ARGUMENT, a
    /// method other than POST 405 and INTERNAL.
    @Test func requestsThatAreNotGRPCAreRefusedAsGrpcGoRefusesThem() async throws {
        let f = try await DevClusterFixture()
        let url = "http://127.0.0.1:\(f.leaderPort)/etcdserverpb.KV/Range"
        // No request body: the server answers on the headers and, as grpc-go,
        // resets a stream the client has not ended (RST_STREAM NO_ERROR); curl
        // 7.88 then failed a body it had yet to send with error 92, now and then.
        var (_, output) = try await runProcess(
            "/usr/bin/curl", ["-sS", "-i", "--http2-prior-knowledge", "-X", "POST", "-H", "content-type: text/plain", url])
        #expect(output.hasPrefix("HTTP/2 415") && output.contains("grpc-status: 3"), "\(output)")
        #expect(output.contains("invalid gRPC request content-type"), "\(output)")
        (_, output) = try await runProcess(
            "/usr/bin/curl", ["-sS", "-i", "--http2-prior-knowledge", "-H", "content-type: application/grpc", url])
        #expect(output.hasPrefix("HTTP/2 405") && output.contains("grpc-status: 13"), "\(output)")
        // The connection and the member go on serving.
        let (code, put) = try await f.run(f.leaderPort, "put", "after", "v")
        #expect(code == 0 && put == "OK\n")
        await f.close()
    }

    @Test func metricsURLsServeTheHTTPEndpointsOnly() async throws {
        let directory = NSTemporaryDirectory() + "ensemble-metrics-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ports = try freePortsForTests(3)
        var c = singleMember("m", directory: directory, clientPort: ports[0], peerPort: ports[1])
        // Also etcd's unix://host:port: a socket file named host:port in the
        // working directory, removed on stop.
        let socket = "metrics-\(UUID().uuidString.prefix(8)):1"
        defer { try? FileManager.default.removeItem(atPath: socket) }
        c.listenMetricsURLs = ["http://127.0.0.1:\(ports[2])", "unix://\(socket)"]
        let member = try await EnsembleMember.start(c)
        #expect(member.metricsPorts == [ports[2], 0])
        var healthy = false
        for _ in 0..<50 where !healthy {
            healthy = (try? await get(ports[2], "/health"))?.0 == 200
            if !healthy { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(healthy)
        let (code, metrics) = try await get(ports[2], "/metrics")
        #expect(code == 200 && metrics.contains("etcd_server_has_leader 1"))
        let (status, output) = try await runProcess("/usr/bin/etcdctl", ["--endpoints=127.0.0.1:\(ports[2])", "--command-timeout=3s", "get", "k"])
        #expect(status != 0 && output.contains("Unimplemented"), "no gRPC on the metrics port: \(output)")
        let (_, overSocket) = try await runProcess("/usr/bin/curl", ["-sS", "--unix-socket", socket, "http://localhost/metrics"])
        #expect(overSocket.contains("etcd_server_has_leader 1"), "\(overSocket)")
        await member.shutdown()
        #expect(!FileManager.default.fileExists(atPath: socket))
    }
}

/// A plain HTTP GET of `path` on a local port: the status and the body.
func httpGet(_ port: Int, _ path: String) async throws -> (Int, String) {
    let url = try #require(URL(string: "http://127.0.0.1:\(port)\(path)"))
    let (data, response) = try await URLSession.shared.data(from: url)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

/// A one-member cluster's configuration on loopback ports.
func singleMember(_ name: String, directory: String, clientPort: Int, peerPort: Int) -> MemberConfiguration {
    var c = MemberConfiguration()
    c.name = name
    c.dataDirectory = directory
    c.listenClientURLs = ["http://127.0.0.1:\(clientPort)"]
    c.advertiseClientURLs = c.listenClientURLs
    c.listenPeerURLs = ["http://127.0.0.1:\(peerPort)"]
    c.initialAdvertisePeerURLs = c.listenPeerURLs
    c.initialCluster = "\(name)=http://127.0.0.1:\(peerPort)"
    return c
}
