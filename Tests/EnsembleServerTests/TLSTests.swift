import EnsembleServer
import Foundation
import Raft
import Testing

/// TLS with etcd's flags: on the client port, through the real etcdctl 3.4
/// and curl (`https://` listen-client-urls, `--cert-file`/`--key-file`,
/// `--client-cert-auth` with `--trusted-ca-file`), and between members
/// (`https://` peer URLs and the `--peer-*` flags).
@Suite(.serialized, .timeLimit(.minutes(2))) struct TLSTests {
    /// A CA, a server, a client and a peer (both) certificate for 127.0.0.1,
    /// made with the openssl command line in a temporary directory.
    struct Certificates {
        let directory: String
        var ca: String { directory + "/ca.pem" }
        var serverCert: String { directory + "/server.pem" }
        var serverKey: String { directory + "/server.key" }
        var clientCert: String { directory + "/client.pem" }
        var clientKey: String { directory + "/client.key" }
        var peerCert: String { directory + "/peer.pem" }
        var peerKey: String { directory + "/peer.key" }

        init() async throws {
            directory = NSTemporaryDirectory() + "ensemble-tls-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            try await openssl(["req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ensemble-test-ca"])
            for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth"), ("peer", "serverAuth,clientAuth")] {
                try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=\(usage)\n"
                    .write(toFile: directory + "/\(name).ext", atomically: true, encoding: .utf8)
                try await openssl(["req"] + ec + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)"])
                try await openssl([
                    "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext",
                ])
            }
        }

        /// Another certificate from the same CA, for both ends, with these
        /// subject alternative names (openssl's syntax: `IP:…,DNS:…`).
        func issue(_ name: String, names: String) async throws -> (cert: String, key: String) {
            try "subjectAltName=\(names)\nextendedKeyUsage=serverAuth,clientAuth\n"
                .write(toFile: directory + "/\(name).ext", atomically: true, encoding: .utf8)
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            try await openssl(["req"] + ec + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(name)"])
            try await openssl([
                "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext",
            ])
            return (directory + "/\(name).pem", directory + "/\(name).key")
        }

        func openssl(_ arguments: [String]) async throws {
            let (status, output) = try await runProcess("/bin/sh", ["-c", "cd '\(directory)' && openssl \"$@\" 2>&1", "openssl"] + arguments)
            guard status == 0 else { throw TLSTestError("openssl \(arguments.joined(separator: " ")): \(output)") }
        }

        func remove() { try? FileManager.default.removeItem(atPath: directory) }
    }

    struct TLSTestError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// One member serving its client port over TLS.
    /// One member serving its client port over TLS; `trustedCA` sets
    /// `--trusted-ca-file`, which requires client certificates with or
    /// without `--client-cert-auth` (as in etcd 3.4).
    func member(_ certificates: Certificates, trustedCA: Bool = false, clientCertAuth: Bool = false) async throws -> (EnsembleMember, Int) {
        let ports = try freePortsForTests(2)
        var c = MemberConfiguration()
        c.name = "tls"
        c.dataDirectory = certificates.directory + "/data-\(UUID().uuidString)"
        c.listenClientURLs = ["https://127.0.0.1:\(ports[0])"]
        c.advertiseClientURLs = c.listenClientURLs
        c.listenPeerURLs = ["http://127.0.0.1:\(ports[1])"]
        c.initialAdvertisePeerURLs = c.listenPeerURLs
        c.initialCluster = "tls=http://127.0.0.1:\(ports[1])"
        c.certFile = certificates.serverCert
        c.keyFile = certificates.serverKey
        if trustedCA { c.trustedCAFile = certificates.ca }
        c.clientCertAuth = clientCertAuth
        try c.validate()
        return (try await EnsembleMember.start(c), ports[0])
    }

    func etcdctl(_ port: Int, scheme: String = "https", _ arguments: [String]) async throws -> (Int32, String) {
        try await runProcess("/usr/bin/etcdctl", ["--endpoints=\(scheme)://127.0.0.1:\(port)", "--command-timeout=5s"] + arguments)
    }

    @Test func etcdctlAndCurlSpeakTLSToTheClientPort() async throws {
        let certificates = try await Certificates()
        defer { certificates.remove() }
        let (member, port) = try await member(certificates)
        let ca = "--cacert=\(certificates.ca)"
        var (code, output) = try await etcdctl(port, [ca, "put", "secret", "kept"])
        #expect(code == 0 && output == "OK\n", "\(output)")
        (code, output) = try await etcdctl(port, [ca, "get", "secret", "--print-value-only"])
        #expect(code == 0 && output == "kept\n", "\(output)")
        (code, output) = try await etcdctl(port, [ca, "endpoint", "health"])
        #expect(code == 0 && output.contains("is healthy"), "\(output)")
        // Without the CA the server is not trusted; in the clear it is not understood.
        (code, output) = try await etcdctl(port, ["get", "secret"])
        #expect(code != 0, "\(output)")
        (code, output) = try await etcdctl(port, scheme: "http", ["get", "secret"])
        #expect(code != 0, "\(output)")
        // HTTP/1.1 endpoints share the port (ALPN http/1.1).
        (code, output) = try await runProcess("/usr/bin/curl", ["-sS", "--cacert", certificates.ca, "https://127.0.0.1:\(port)/health"])
        #expect(code == 0 && output.contains("\"health\":\"true\""), "\(output)")
        // The ensemble CLI and bench take etcdctl's TLS flags.
        let ensemble = try ProcessCluster.binaryPath()
        let endpoint = "--endpoints=https://127.0.0.1:\(port)"
        (code, output) = try await runProcess(ensemble, ["kv", "get", endpoint, ca, "secret"])
        #expect(code == 0 && output == "secret\nkept\n", "\(output)")
        (code, output) = try await runProcess(ensemble, ["bench", endpoint, ca, "--total=200", "put"])
        #expect(code == 0 && output.contains("Requests/sec"), "\(output)")
        (code, output) = try await runProcess(ensemble, ["kv", "get", endpoint, "secret"])
        #expect(code != 0, "the system's roots do not know the test CA: \(output)")
        await member.shutdown()
    }

    @Test(arguments: [true, false])
    func aTrustedCARefusesClientsWithoutACertificate(clientCertAuth: Bool) async throws {
        let certificates = try await Certificates()
        defer { certificates.remove() }
        let (member, port) = try await member(certificates, trustedCA: true, clientCertAuth: clientCertAuth)
        let ca = "--cacert=\(certificates.ca)"
        var (code, output) = try await etcdctl(port, [ca, "put", "k", "v"])
        #expect(code != 0, "no client certificate: \(output)")
        (code, output) = try await etcdctl(port, [ca, "--cert=\(certificates.clientCert)", "--key=\(certificates.clientKey)", "put", "k", "v"])
        #expect(code == 0 && output == "OK\n", "\(output)")
        // A certificate the trusted CA did not sign is refused: the server's
        // own key pair is signed by it, so use a fresh self-signed one.
        let other = try await Certificates()
        defer { other.remove() }
        (code, output) = try await etcdctl(port, [ca, "--cert=\(other.clientCert)", "--key=\(other.clientKey)", "get", "k"])
        #expect(code != 0, "a client certificate from another CA: \(output)")
        await member.shutdown()
    }

    /// Three members whose Raft traffic runs inside TLS, each accepting only
    /// members whose certificate the CA signed, serving clients over TLS
    /// with the CA known to the clients only: a lease query on a follower
    /// reaches the leader over its https:// peer URL (the leader forwarder;
    /// the client URLs advertised cannot be reached).
    @Test func membersReplicateOverTLS() async throws {
        let certificates = try await Certificates()
        defer { certificates.remove() }
        let ports = try freePortsForTests(6)
        let names = ["a", "b", "c"]
        let ca = "--cacert=\(certificates.ca)"
        let initialCluster = names.indices.map { "\(names[$0])=https://127.0.0.1:\(ports[3 + $0])" }.joined(separator: ",")
        var members: [EnsembleMember] = []
        try await withThrowingTaskGroup(of: EnsembleMember.self) { group in
            for i in names.indices {
                var c = MemberConfiguration()
                c.name = names[i]
                c.dataDirectory = certificates.directory + "/data-\(names[i])"
                c.listenClientURLs = ["https://127.0.0.1:\(ports[i])"]
                c.certFile = certificates.serverCert
                c.keyFile = certificates.serverKey
                c.advertiseClientURLs = ["https://127.0.0.1:1"]
                c.listenPeerURLs = ["https://127.0.0.1:\(ports[3 + i])"]
                c.initialAdvertisePeerURLs = c.listenPeerURLs
                c.initialCluster = initialCluster
                c.peerCertFile = certificates.peerCert
                c.peerKeyFile = certificates.peerKey
                c.peerTrustedCAFile = certificates.ca
                c.peerClientCertAuth = true
                group.addTask { try await EnsembleMember.start(c) }
            }
            for try await member in group { members.append(member) }
        }
        var (code, output) = (Int32(1), "")
        for _ in 0..<100 where code != 0 {
            (code, output) = try await etcdctl(ports[0], [ca, "put", "over", "tls"])
            if code != 0 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(code == 0 && output == "OK\n", "\(output)")
        for port in ports[1...2] {
            (code, output) = try await etcdctl(port, [ca, "get", "over", "--print-value-only"])
            #expect(code == 0 && output == "tls\n", "\(output)")
        }
        let leader = members.first { $0.node.status.role == .leader }
        let follower = try #require(members.indices.first { members[$0] !== leader && members[$0].node.status.leader != .none })
        (code, output) = try await etcdctl(ports[follower], [ca, "lease", "grant", "60"])
        let lease = try #require(output.split(separator: " ").dropFirst().first, "\(output)")
        (code, output) = try await etcdctl(ports[follower], [ca, "lease", "timetolive", String(lease)])
        #expect(code == 0 && output.contains("granted with TTL(60s)"), "\(output)")
        for member in members { await member.shutdown(handOff: false) }
    }

    /// As in etcd 3.4, a member's certificate must name the address it
    /// connects from. Member b listens on 127.0.0.2 with a certificate for
    /// that address, but connects to a from 127.0.0.1 (loopback's source
    /// address is the destination's): a refuses those connections, so b's
    /// answers never reach a and the two cannot elect a leader. A DNS name
    /// that resolves to 127.0.0.1 (`localhost`) or etcd's
    /// `--experimental-peer-skip-client-san-verification` on a lets them.
    @Test(arguments: [("IP:127.0.0.2", false, false), ("IP:127.0.0.2,DNS:localhost", false, true), ("IP:127.0.0.2", true, true)])
    func aMembersCertificateMustNameTheAddressItConnectsFrom(names: String, skipCheck: Bool, elects: Bool) async throws {
        let certificates = try await Certificates()
        defer { certificates.remove() }
        let b = try await certificates.issue("b", names: names)
        // b's ports are taken on its own address (one free on 127.0.0.1 may not be there).
        let first = try freePortsForTests(2)
        let second = try freePortsForTests(2, host: "127.0.0.2")
        let ports = [first[0], second[0], first[1], second[1]]
        let hosts = ["127.0.0.1", "127.0.0.2"]
        let initialCluster = "a=https://\(hosts[0]):\(ports[2]),b=https://\(hosts[1]):\(ports[3])"
        var members: [EnsembleMember] = []
        try await withThrowingTaskGroup(of: EnsembleMember.self) { group in
            for (i, name) in ["a", "b"].enumerated() {
                var c = MemberConfiguration()
                c.name = name
                c.dataDirectory = certificates.directory + "/data-\(name)"
                c.listenClientURLs = ["http://\(hosts[i]):\(ports[i])"]
                c.advertiseClientURLs = c.listenClientURLs
                c.listenPeerURLs = ["https://\(hosts[i]):\(ports[2 + i])"]
                c.initialAdvertisePeerURLs = c.listenPeerURLs
                c.initialCluster = initialCluster
                (c.peerCertFile, c.peerKeyFile) = i == 0 ? (certificates.peerCert, certificates.peerKey) : b
                c.peerTrustedCAFile = certificates.ca
                c.peerClientCertAuth = true
                c.peerSkipClientSANVerification = skipCheck && i == 0
                try c.validate()
                group.addTask { try await EnsembleMember.start(c) }
            }
            for try await member in group { members.append(member) }
        }
        let deadline = ContinuousClock.now + .seconds(elects ? 15 : 4)
        while ContinuousClock.now < deadline && members.contains(where: { $0.node.status.leader == .none }) {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(members.allSatisfy { $0.node.status.leader != .none } == elects)
        for member in members { await member.shutdown(handOff: false) }
    }

    @Test func misconfigurationsAreRefusedByName() throws {
        var c = MemberConfiguration()
        c.name = "default"
        c.listenClientURLs = ["https://127.0.0.1:2379"]
        #expect(throws: ConfigurationError("TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme")) {
            try c.validate()
        }
        c.certFile = "/nonexistent/server.pem"
        c.keyFile = "/nonexistent/server.key"
        try c.validate()
        #expect(throws: ConfigurationError.self) { try c.clientTLSServerContext() }
        c.clientCertAuth = true
        #expect(throws: ConfigurationError("--client-cert-auth needs --trusted-ca-file")) { try c.validate() }
        // On http:// URLs there is nothing to check: taken, as etcd does (with a warning there).
        var plain = MemberConfiguration()
        plain.clientCertAuth = true
        plain.peerClientCertAuth = true
        try plain.validate()
        c = MemberConfiguration()
        c.listenPeerURLs = ["https://127.0.0.1:2380"]
        #expect(throws: ConfigurationError("TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url https://127.0.0.1:2380 with HTTPS scheme")) {
            try c.validate()
        }
        c.peerCertFile = "/nonexistent/peer.pem"
        c.peerKeyFile = "/nonexistent/peer.key"
        c.peerClientCertAuth = true
        #expect(throws: ConfigurationError("--peer-client-cert-auth needs --peer-trusted-ca-file")) { try c.validate() }
        let yaml = try MemberConfiguration(yaml: """
            client-transport-security:
              cert-file: /etc/ensemble/server.pem
              key-file: /etc/ensemble/server.key
              trusted-ca-file: /etc/ensemble/ca.pem
              client-cert-auth: true
              auto-tls: false
            peer-transport-security:
              cert-file: /etc/ensemble/peer.pem
              key-file: /etc/ensemble/peer.key
              trusted-ca-file: /etc/ensemble/ca.pem
              client-cert-auth: true
              auto-tls:
            """)
        #expect(yaml.certFile == "/etc/ensemble/server.pem" && yaml.keyFile == "/etc/ensemble/server.key")
        #expect(yaml.trustedCAFile == "/etc/ensemble/ca.pem" && yaml.clientCertAuth)
        #expect(yaml.peerCertFile == "/etc/ensemble/peer.pem" && yaml.peerKeyFile == "/etc/ensemble/peer.key")
        #expect(yaml.peerTrustedCAFile == "/etc/ensemble/ca.pem" && yaml.peerClientCertAuth)
        // etcd reads the SAN-check switch only as a flag (a config file's key is ignored there).
        #expect(try MemberConfiguration(yaml: "experimental-peer-skip-client-san-verification: false").peerSkipClientSANVerification == false)
        #expect(throws: ConfigurationError.self) { try MemberConfiguration(yaml: "experimental-peer-skip-client-san-verification: true") }
    }
}
