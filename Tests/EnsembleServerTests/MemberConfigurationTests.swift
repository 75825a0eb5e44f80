import EnsembleServer
import Foundation
import NIOCore
import Raft
import Testing

/// `ensemble serve`'s configuration: etcd's flags and config file, checked as
/// etcd checks them, and the identity a data directory keeps.
@Suite struct MemberConfigurationTests {
    func founder(_ name: String = "a") -> MemberConfiguration {
        var c = MemberConfiguration()
        c.name = name
        c.initialCluster = "a=http://127.0.0.1:2380,b=http://127.0.0.1:12380"
        c.initialAdvertisePeerURLs = ["http://127.0.0.1:2380"]
        c.listenPeerURLs = ["http://127.0.0.1:2380"]
        return c
    }

    /// etcd's minimum lease TTL counts whole ticks: 1,350 ms of election
    /// timeout at 100 ms heartbeats is 13 ticks, (3 × 13) / 2 = 19 heartbeats,
    /// 1.9 s → 2 (1.5 × 1.35 s would be 2.025 s → 3).
    @Test func minimumLeaseTTLIsEtcds() {
        #expect(LeaseService.minimumTTL(electionTicks: 10, heartbeat: .milliseconds(100)) == 2)
        #expect(LeaseService.minimumTTL(electionTicks: 13, heartbeat: .milliseconds(100)) == 2)
        #expect(LeaseService.minimumTTL(electionTicks: 10, heartbeat: .milliseconds(500)) == 8)
        #expect(LeaseService.minimumTTL(electionTicks: 5, heartbeat: .milliseconds(10)) == 2, "the log's floor")
        // Whole nanoseconds, as Go's Duration (floating point made these 4 and 10).
        #expect(LeaseService.minimumTTL(electionTicks: 7, heartbeat: .milliseconds(300)) == 3)
        #expect(LeaseService.minimumTTL(electionTicks: 40, heartbeat: .milliseconds(150)) == 9)
        var c = MemberConfiguration()
        c.heartbeatInterval = .milliseconds(100)
        c.electionTimeout = .milliseconds(1350)
        #expect(c.electionTicks == 13)
    }

    @Test func foundingMemberMustBeInTheInitialClusterWithItsURLs() throws {
        try founder().validate()
        #expect(throws: ConfigurationError.self) { try founder("z").validate() }
        var moved = founder()
        moved.initialAdvertisePeerURLs = ["http://127.0.0.1:9999"]
        #expect(throws: ConfigurationError.self) { try moved.validate() }
        var bad = founder()
        bad.listenClientURLs = ["not a url"]
        #expect(throws: ConfigurationError.self) { try bad.validate() }
        var fast = founder()
        fast.electionTimeout = .milliseconds(200)
        #expect(throws: ConfigurationError.self, "election timeout under 5 heartbeats") { try fast.validate() }
        // etcd's URL rules: no path, an IP (or localhost) to bind.
        var pathed = founder()
        pathed.advertiseClientURLs = ["http://127.0.0.1:2379/v3"]
        #expect(throws: ConfigurationError("URL must not contain a path: http://127.0.0.1:2379/v3")) { try pathed.validate() }
        var named = founder()
        named.listenClientURLs = ["http://example.com:2379"]
        #expect(throws: ConfigurationError("expected IP in URL for binding (http://example.com:2379)")) { try named.validate() }
        named.listenClientURLs = ["http://[::1]:2379", "http://0.0.0.0:2379", "http://localhost:2379"]
        try named.validate()
        var joiner = founder("z")
        joiner.initialClusterState = .existing
        // etcd's VerifyJoinExisting: a joiner must be in --initial-cluster too.
        #expect(throws: ConfigurationError("couldn't find local name \"z\" in the initial cluster configuration")) { try joiner.validate() }
        joiner.initialCluster += ",z=http://127.0.0.1:9999"
        try joiner.validate()
        // A member its data directory already names (a restart, a restored
        // backup) ignores the --initial-* flags, as in etcd.
        try founder("z").validate(initialized: true)
        try moved.validate(initialized: true)
    }

    /// etcd's UpdateDefaultClusterFromName, for flags and config files alike.
    @Test func aMemberWithoutInitialClusterFoundsItsOwn() throws {
        var c = try MemberConfiguration(yaml: "name: n1\ninitial-advertise-peer-urls: http://10.0.0.1:2380\n")
        c.deriveInitialClusterFromName()
        #expect(c.initialCluster == "n1=http://10.0.0.1:2380")
        var d = MemberConfiguration()
        d.deriveInitialClusterFromName()
        #expect(d.initialCluster == "default=http://localhost:2380")
    }

    @Test func initialClusterParsesRepeatedNamesAsSeveralURLs() throws {
        var c = MemberConfiguration()
        c.initialCluster = "a=http://h1:1,b=http://h2:2,a=http://h3:3"
        let parsed = try c.parsedInitialCluster()
        #expect(parsed.map(\.name) == ["a", "b"])
        #expect(parsed.first?.peerURLs == ["http://h1:1", "http://h3:3"])
        c.initialCluster = "a"
        #expect(throws: ConfigurationError.self) { try c.parsedInitialCluster() }
        // Ids derive from peer URLs: one URL for two members would make one
        // process two voters.
        c.initialCluster = "a=http://h1:1,b=http://h1:1"
        #expect(throws: ConfigurationError.self) { try c.parsedInitialCluster() }
        c.initialCluster = "a=http://h1:1,a=http://h1:1"
        #expect(throws: ConfigurationError.self) { try c.parsedInitialCluster() }
    }

    @Test func yamlConfigFileUsesEtcdKeys() throws {
        let c = try MemberConfiguration(yaml: """
            name: infra1
            data-dir: /var/lib/ensemble/infra1
            listen-client-urls: http://127.0.0.1:2379,http://10.0.0.1:2379
            advertise-client-urls: http://10.0.0.1:2379
            listen-peer-urls: http://10.0.0.1:2380
            initial-advertise-peer-urls: http://10.0.0.1:2380
            initial-cluster: infra1=http://10.0.0.1:2380
            initial-cluster-state: new
            initial-cluster-token: prod
            heartbeat-interval: 50
            election-timeout: 500
            snapshot-count: 5000
            quota-backend-bytes: 8589934592
            grpc-keepalive-min-time: 10s
            experimental-lease-checkpoint-interval: 60000000000
            experimental-corrupt-check-time: 2m
            event-loop-threads: 3
            log-level: warn
            logger: zap
            log-outputs: [stderr, /var/log/ensemble.log]
            """)
        #expect(c.logLevel == "warn" && c.logger == "zap" && c.logOutputs == ["stderr", "/var/log/ensemble.log"])
        #expect(c.name == "infra1" && c.dataDirectory == "/var/lib/ensemble/infra1")
        #expect(c.listenClientURLs == ["http://127.0.0.1:2379", "http://10.0.0.1:2379"])
        #expect(c.heartbeatInterval == .milliseconds(50) && c.electionTimeout == .milliseconds(500))
        #expect(c.snapshotCount == 5000 && c.quotaBackendBytes == 8_589_934_592 && c.initialClusterToken == "prod")
        #expect(try c.grpcKeepalive() == GRPCKeepalive(interval: .seconds(7200), timeout: .seconds(20), minimumTime: .seconds(10)))
        #expect(c.resolvedEventLoopThreads == 3 && MemberConfiguration().resolvedEventLoopThreads == System.coreCount)
        #expect(try c.leaseCheckpointSeconds() == 60 && MemberConfiguration().leaseCheckpointSeconds() == 5)
        var off = c
        off.leaseCheckpointInterval = "0"
        #expect(try off.leaseCheckpointSeconds() == 0)
        off.leaseCheckpointInterval = "soon"
        #expect(throws: ConfigurationError.self) { try off.leaseCheckpointSeconds() }
        #expect(try c.corruptCheckInterval() == .seconds(120) && MemberConfiguration().corruptCheckInterval() == nil)
        off.corruptCheckTime = "often"
        #expect(throws: ConfigurationError("--experimental-corrupt-check-time: \"often\" is not a duration such as 1m or 30s")) {
            try off.validate()
        }
        try c.validate()
        var negative = c
        negative.eventLoopThreads = -1
        #expect(throws: ConfigurationError("--event-loop-threads must be 0 (one per core) or more")) { try negative.validate() }
        #expect(throws: ConfigurationError.self, "typos are refused by name") {
            try MemberConfiguration(yaml: "nmae: x")
        }
        #expect(throws: ConfigurationError.self) { try MemberConfiguration(yaml: "initial-cluster-state: maybe") }
    }

    /// etcd's sample configuration file loads: keys left empty keep their
    /// defaults, etcd settings that change nothing here are taken with a
    /// warning, and ones that would be surprising to ignore are refused
    /// unless they hold etcd's default (review finding: every etcd key
    /// Ensemble lacks was refused, so etcd's own files did not start).
    @Test func etcdsSampleConfigFileLoads() throws {
        let sample = """
            name: 'default'
            data-dir:
            wal-dir:
            snapshot-count: 10000
            heartbeat-interval: 100
            election-timeout: 1000
            quota-backend-bytes: 0
            listen-peer-urls: http://localhost:2380
            listen-client-urls: http://localhost:2379
            max-snapshots: 5
            max-wals: 5
            cors:
            initial-advertise-peer-urls: http://localhost:2380
            advertise-client-urls: http://localhost:2379
            discovery:
            discovery-fallback: 'proxy'
            discovery-proxy:
            discovery-srv:
            initial-cluster:
            initial-cluster-token: 'etcd-cluster'
            initial-cluster-state: 'new'
            strict-reconfig-check: false
            enable-v2: true
            enable-pprof: true
            proxy: 'off'
            proxy-failure-wait: 5000
            proxy-refresh-interval: 30000
            proxy-dial-timeout: 1000
            proxy-write-timeout: 5000
            proxy-read-timeout: 0
            client-transport-security:
              cert-file:
              key-file:
              client-cert-auth: false
              trusted-ca-file:
              auto-tls: false
            peer-transport-security:
              cert-file:
              key-file:
              client-cert-auth: false
              trusted-ca-file:
              auto-tls: false
            debug: false
            logger: zap
            log-outputs: [stderr]
            force-new-cluster: false
            auto-compaction-mode: periodic
            auto-compaction-retention: "1"
            """
        let (c, warnings) = try MemberConfiguration.load(yaml: sample)
        #expect(c.snapshotCount == 10_000 && c.dataDirectory == MemberConfiguration().dataDirectory)
        #expect(warnings.contains { $0.contains("enable-v2") } && warnings.contains { $0.contains("max-wals") })
        #expect(!warnings.contains { $0.contains("wal-dir") || $0.contains("force-new-cluster") })
        #expect(throws: ConfigurationError("config file: wal-dir: /wal is not supported by Ensemble (only etcd's default)")) {
            try MemberConfiguration(yaml: "wal-dir: /wal")
        }
        #expect(throws: ConfigurationError.self) { try MemberConfiguration(yaml: "force-new-cluster: true") }
        #expect(throws: ConfigurationError.self) { try MemberConfiguration(yaml: "proxy: on") }
    }

    /// Review finding: durations went through the auto-compaction parser,
    /// where a bare number is hours: `5` meant 5 h, etcd's nanosecond
    /// integers from a config file meant 10^11 hours (or trapped on overflow),
    /// and `500ms` was refused. They are Go durations now.
    @Test func durationsAreGoDurations() {
        #expect(GoDuration.parse("0") == .zero)
        #expect(GoDuration.parse("500ms") == .milliseconds(500))
        #expect(GoDuration.parse("1.5h") == .seconds(5400))
        #expect(GoDuration.parse("2h45m30s") == .seconds(9930))
        #expect(GoDuration.parse("10us") == .microseconds(10) && GoDuration.parse("10\u{B5}s") == .microseconds(10))
        #expect(GoDuration.parse("-3s") == .seconds(-3))
        #expect(GoDuration.parse("300000000000ns") == .seconds(300))
        for bad in ["", "5", "s", "1x", "1.s2", ".s", "1h-2m", "99999999999h"] {
            #expect(GoDuration.parse(bad) == nil, "\(bad)")
        }
        #expect(AutoCompactionPolicy.parseDuration("1") == .seconds(3600), "a bare retention counts hours, as etcd's")
        #expect(AutoCompactionPolicy.parseDuration("1e300") == nil)
    }

    @Test func identitySurvivesInTheDataDirectory() throws {
        let directory = NSTemporaryDirectory() + "ensemble-identity-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(try MemberIdentity.load(from: directory) == nil)
        let identity = MemberIdentity(name: "a", memberID: 0xDEAD_BEEF_0000_0001, clusterID: 42)
        try identity.save(in: directory)
        #expect(try MemberIdentity.load(from: directory) == identity)
        try Data("{garbage".utf8).write(to: URL(fileURLWithPath: directory + "/member.json"))
        #expect(throws: ConfigurationError.self) { try MemberIdentity.load(from: directory) }
    }

    /// Ids depend only on peer URLs and the token, so every founder computes
    /// the same ids and the same cluster id.
    @Test func memberAndClusterIDsAreDeterministic() {
        let a = ClusterService.memberID(peerURLs: ["http://h:1", "http://h:2"], salt: "t")
        #expect(a == ClusterService.memberID(peerURLs: ["http://h:2", "http://h:1"], salt: "t"))
        #expect(a != ClusterService.memberID(peerURLs: ["http://h:1", "http://h:2"], salt: "other"))
        #expect(ClusterService.clusterID(memberIDs: [3, 1, 2]) == ClusterService.clusterID(memberIDs: [1, 2, 3]))
    }

    /// The ids etcd 3.4.23 gave the same founders ("starting member
    /// ce675075d1f2d62d in cluster ceba214c92630691" for `--name a
    /// --initial-cluster a=http://127.0.0.1:45380,b=http://127.0.0.1:45381
    /// --initial-cluster-token tok`).
    @Test func foundersGetEtcdsIDs() {
        let a = ClusterService.memberID(peerURLs: ["http://127.0.0.1:45380"], salt: "tok")
        let b = ClusterService.memberID(peerURLs: ["http://127.0.0.1:45381"], salt: "tok")
        #expect(a == 0xce67_5075_d1f2_d62d && b == 0xab43_aeb5_ccac_ba51)
        #expect(ClusterService.clusterID(memberIDs: [a, b]) == 0xceba_214c_9263_0691)
    }
}

/// etcd's auto-compaction policies, driven by a fake clock.
@Suite struct AutoCompactionTests {
    @Test func periodicKeepsTheRetentionPeriodOfHistory() throws {
        var policy = try #require(try AutoCompactionPolicy.parse(mode: "periodic", retention: "1h"))
        #expect(policy.checkInterval == .seconds(360))
        // A sample every 6 minutes; revision grows by 100 each time.
        var compacted: [Int64] = []
        for step in 0...20 {
            if let target = policy.observe(now: .seconds(360 * step), revision: Int64(100 * step + 1)) { compacted.append(target) }
        }
        // From the 10th check on, the revision current one hour earlier.
        #expect(compacted.first == 1 + 0 * 100 || compacted.first == 101, "\(compacted)")
        #expect(compacted.last == 1001, "one hour (10 samples) before revision 2001: \(compacted)")
        #expect(compacted == compacted.sorted() && Set(compacted).count == compacted.count, "never twice, never backwards")
    }

    @Test func revisionKeepsTheLastNRevisions() throws {
        var policy = try #require(try AutoCompactionPolicy.parse(mode: "revision", retention: "1000"))
        #expect(policy.observe(now: .zero, revision: 500) == nil, "nothing to compact yet")
        #expect(policy.observe(now: .seconds(300), revision: 5000) == 4000)
        #expect(policy.observe(now: .seconds(301), revision: 9000) == nil, "checks every 5 minutes")
        #expect(policy.observe(now: .seconds(600), revision: 9000) == 8000)
    }

    /// Client URLs may be etcd's `unix://host:port` and `unixs://host:port`
    /// (a socket file of that name); peer URLs may not, and a path is refused
    /// as etcd refuses it.
    @Test func unixClientURLsAreTakenAsEtcdTakesThem() throws {
        #expect(ClientListenAddress(url: "unix://localhost:2379") == .unix(path: "localhost:2379"))
        #expect(ClientListenAddress(url: "unixs://etcd.sock:0") == .unix(path: "etcd.sock:0"))
        #expect(ClientListenAddress(url: "unix:///tmp/etcd.sock") == nil)
        #expect(ClientListenAddress(url: "unix://localhost") == nil)
        #expect(ClientListenAddress.isSecure("unixs://localhost:1") && !ClientListenAddress.isSecure("unix://localhost:1"))
        var c = MemberConfiguration()
        c.name = "u"
        c.listenClientURLs = ["unix://localhost:2379"]
        c.advertiseClientURLs = c.listenClientURLs
        c.listenPeerURLs = ["http://127.0.0.1:2380"]
        c.initialAdvertisePeerURLs = c.listenPeerURLs
        c.initialCluster = "u=http://127.0.0.1:2380"
        try c.validate()
        c.listenClientURLs = ["unixs://localhost:2379"]
        #expect(throws: ConfigurationError("TLS key/cert (--cert-file, --key-file) must be provided for client url unixs://localhost:2379 with HTTPS scheme")) {
            try c.validate()
        }
        c.listenClientURLs = ["unix://localhost:2379"]
        c.listenPeerURLs = ["unix://localhost:2380"]
        #expect(throws: ConfigurationError.self) { try c.validate() }
    }

    /// `member add` prints a member not yet started as `=url` (no name yet);
    /// etcd takes that in --initial-cluster, and a joiner needs it whole.
    @Test func anUnnamedMemberIsTakenInTheInitialCluster() throws {
        var c = MemberConfiguration()
        c.initialCluster = "=http://127.0.0.1:1,d=http://127.0.0.1:2"
        let parsed = try c.parsedInitialCluster()
        #expect(parsed.map(\.name) == ["", "d"] && parsed[0].peerURLs == ["http://127.0.0.1:1"])
        c.initialCluster = "d="
        #expect(throws: ConfigurationError("--initial-cluster: \"d=\" is not name=peerURL")) { try c.parsedInitialCluster() }
    }

    /// Every `--listen-peer-urls` is bound, as in etcd: member a listens on
    /// 127.0.0.1 and 127.0.0.2 but advertises only the second, which is how
    /// b reaches it. Schemes may not mix (one TLS setup serves them all).
    @Test func everyListenPeerURLIsBound() async throws {
        var mixed = MemberConfiguration()
        mixed.listenPeerURLs = ["http://127.0.0.1:2380", "https://127.0.0.1:2381"]
        #expect(throws: ConfigurationError("--listen-peer-urls: mixes http:// and https:// (http://127.0.0.1:2380,https://127.0.0.1:2381)")) {
            try mixed.validate()
        }
        let directory = NSTemporaryDirectory() + "ensemble-peer-urls-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Ports free a moment ago can be taken by a test running alongside
        // before the members bind them (seen in CI): then again, with others.
        var members: [EnsembleMember] = []
        for attempt in 0..<3 where members.isEmpty {
            var ports = try freePortsForTests(5)
            ports[3] = try freePortsForTests(1, host: "127.0.0.2")[0]
            let cluster = "a=http://127.0.0.2:\(ports[3]),b=http://127.0.0.1:\(ports[4])"
            var a = singleMember("a", directory: directory + "/\(attempt)/a", clientPort: ports[0], peerPort: ports[2])
            a.listenPeerURLs = ["http://127.0.0.1:\(ports[2])", "http://127.0.0.2:\(ports[3])"]
            a.initialAdvertisePeerURLs = ["http://127.0.0.2:\(ports[3])"]
            a.initialCluster = cluster
            var b = singleMember("b", directory: directory + "/\(attempt)/b", clientPort: ports[1], peerPort: ports[4])
            b.initialCluster = cluster
            let started = await withTaskGroup(of: Result<EnsembleMember, any Error>.self) { group in
                for c in [a, b] {
                    group.addTask {
                        do { return .success(try await EnsembleMember.start(c)) } catch { return .failure(error) }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let failures = started.compactMap { if case let .failure(error) = $0 { error } else { nil } }
            guard failures.isEmpty else {
                for case let .success(member) in started { await member.shutdown(handOff: false) }
                let inUse = failures.allSatisfy { "\($0)".contains("address already in use") }
                if inUse && attempt < 2 { continue }
                throw failures[0]
            }
            members = started.compactMap { try? $0.get() }
        }
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline && members.contains(where: { $0.node.status.leader == .none }) {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(members.allSatisfy { $0.node.status.leader != .none })
        for member in members { await member.shutdown(handOff: false) }
    }

    @Test func flagsAreCheckedAsEtcdChecksThem() throws {
        #expect(try AutoCompactionPolicy.parse(mode: "periodic", retention: "0") == nil)
        #expect(try AutoCompactionPolicy.parse(mode: "periodic", retention: "2")?.mode == .periodic(.seconds(7200)), "bare number: hours")
        #expect(try AutoCompactionPolicy.parse(mode: "periodic", retention: "1h30m")?.mode == .periodic(.seconds(5400)))
        #expect(throws: ConfigurationError.self) { try AutoCompactionPolicy.parse(mode: "weekly", retention: "1") }
        #expect(throws: ConfigurationError.self) { try AutoCompactionPolicy.parse(mode: "revision", retention: "1h") }
    }
}
