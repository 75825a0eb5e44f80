@testable import EnsembleServer
import Foundation
import Raft
import Testing

/// TLS beyond the certificate flags: files changed while running are served
/// to new connections, `--auto-tls`/`--peer-auto-tls`, and the version and
/// cipher-suite flags — checked with the real etcdctl 3.4 and openssl.
@Suite(.serialized, .timeLimit(.minutes(2))) struct TLSOptionsTests {
    let directory = NSTemporaryDirectory() + "ensemble-tls-options-\(UUID().uuidString)"

    func path(_ name: String) -> String { directory + "/" + name }

    /// A CA in `<name>-ca.pem` and a certificate it signs for 127.0.0.1 in
    /// `<name>.pem`/`<name>.key`, made by ``CertificateFactory``.
    func certificates(_ name: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let ca = try CertificateFactory.authority(commonName: "\(name) test CA")
        try CertificateFactory.write(ca, cert: path("\(name)-ca.pem"), key: path("\(name)-ca.key"))
        let server = try CertificateFactory.issue(commonName: name, hosts: ["127.0.0.1", "localhost"], by: ca)
        try CertificateFactory.write(server, cert: path("\(name).pem"), key: path("\(name).key"))
    }

    func configuration(_ name: String, clientPort: Int, peerPort: Int, peerScheme: String = "http") -> MemberConfiguration {
        var c = MemberConfiguration()
        c.name = name
        c.dataDirectory = path("data-\(name)")
        c.listenClientURLs = ["https://127.0.0.1:\(clientPort)"]
        c.advertiseClientURLs = c.listenClientURLs
        c.listenPeerURLs = ["\(peerScheme)://127.0.0.1:\(peerPort)"]
        c.initialAdvertisePeerURLs = c.listenPeerURLs
        c.initialCluster = "\(name)=\(peerScheme)://127.0.0.1:\(peerPort)"
        return c
    }

    func etcdctl(_ port: Int, _ arguments: [String]) async throws -> (Int32, String) {
        try await runProcess("/usr/bin/etcdctl", ["--endpoints=https://127.0.0.1:\(port)", "--command-timeout=5s"] + arguments)
    }

    /// `openssl s_client` against the port; its output names the protocol and cipher.
    func handshake(_ port: Int, _ options: [String]) async throws -> String {
        try await runProcess("/bin/sh", [
            "-c", "echo | timeout 10 openssl s_client -connect 127.0.0.1:\(port) \"$@\" 2>&1", "openssl",
        ] + options).1
    }

    /// A handshake the server refused: openssl fails with a TLS alert or
    /// finds no protocol in common (not a timeout, not a success).
    func refused(_ port: Int, _ options: [String]) async throws -> (Bool, String) {
        let (code, output) = try await runProcess("/bin/sh", [
            "-c", "echo | timeout 10 openssl s_client -connect 127.0.0.1:\(port) \"$@\" 2>&1", "openssl",
        ] + options)
        let alert = output.contains("alert") || output.contains("no protocols available") || output.contains("no cipher")
        return (code != 0 && code != 124 && alert && !output.contains("Cipher is ECDHE"), output)
    }

    /// A certificate and key replaced on disk (a renewal, a new CA) are what
    /// the next connection gets, without a restart; replacement files that
    /// do not load leave the last good ones in use.
    @Test func changedCertificateFilesAreServedWithoutARestart() async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try certificates("first")
        try certificates("second")
        let ports = try freePortsForTests(2)
        var c = configuration("reload", clientPort: ports[0], peerPort: ports[1])
        c.certFile = path("served.pem")
        c.keyFile = path("served.key")
        func serve(_ name: String) throws {
            for ext in ["pem", "key"] {
                let target = path("served.\(ext)")
                try? FileManager.default.removeItem(atPath: target + ".new")
                try FileManager.default.copyItem(atPath: path("\(name).\(ext)"), toPath: target + ".new")
                // As a renewal tool does: the new file renamed over the old.
                guard rename(target + ".new", target) == 0 else { throw CocoaError(.fileWriteUnknown) }
            }
        }
        try serve("first")
        let member = try await EnsembleMember.start(c)
        var (code, output) = try await etcdctl(ports[0], ["--cacert=\(path("first-ca.pem"))", "put", "k", "v"])
        #expect(code == 0 && output == "OK\n", "\(output)")

        try serve("second")
        try await Task.sleep(for: .milliseconds(2_500))  // past the next once-a-second check
        (code, output) = try await etcdctl(ports[0], ["--cacert=\(path("second-ca.pem"))", "get", "k", "--print-value-only"])
        #expect(code == 0 && output == "v\n", "the renewed certificate is served: \(output)")
        (code, output) = try await etcdctl(ports[0], ["--cacert=\(path("first-ca.pem"))", "get", "k"])
        #expect(code != 0, "the old CA no longer verifies it: \(output)")

        // A half-written certificate: the last good pair stays in use.
        try "-----BEGIN CERTIFICATE-----\nMIIB\n".write(toFile: path("served.pem"), atomically: false, encoding: .utf8)
        try await Task.sleep(for: .milliseconds(2_500))  // past the next once-a-second check
        (code, output) = try await etcdctl(ports[0], ["--cacert=\(path("second-ca.pem"))", "get", "k", "--print-value-only"])
        #expect(code == 0 && output == "v\n", "\(output)")
        await member.shutdown()
    }

    /// A Kubernetes Secret mount: `tls.crt` is a fixed link to
    /// `..data/tls.crt`, and a rotation swaps the `..data` link to a new
    /// directory. The link's own attributes never change; what it points to
    /// does (review finding: the files were looked at without following links).
    @Test func aRotatedSecretMountIsServedWithoutARestart() async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try certificates("first")
        try certificates("second")
        let ports = try freePortsForTests(2)
        let mount = path("secret")
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        func publish(_ name: String) throws {
            let version = "..\(name)"
            try FileManager.default.createDirectory(atPath: "\(mount)/\(version)", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: path("\(name).pem"), toPath: "\(mount)/\(version)/tls.crt")
            try FileManager.default.copyItem(atPath: path("\(name).key"), toPath: "\(mount)/\(version)/tls.key")
            // As the kubelet does: a new link renamed over ..data.
            try? FileManager.default.removeItem(atPath: "\(mount)/..data_tmp")
            try FileManager.default.createSymbolicLink(atPath: "\(mount)/..data_tmp", withDestinationPath: version)
            guard rename("\(mount)/..data_tmp", "\(mount)/..data") == 0 else { throw CocoaError(.fileWriteUnknown) }
        }
        try publish("first")
        for file in ["tls.crt", "tls.key"] {
            try FileManager.default.createSymbolicLink(atPath: "\(mount)/\(file)", withDestinationPath: "..data/\(file)")
        }
        var c = configuration("secret", clientPort: ports[0], peerPort: ports[1])
        c.certFile = "\(mount)/tls.crt"
        c.keyFile = "\(mount)/tls.key"
        let member = try await EnsembleMember.start(c)
        var (code, output) = try await etcdctl(ports[0], ["--cacert=\(path("first-ca.pem"))", "put", "k", "v"])
        #expect(code == 0 && output == "OK\n", "\(output)")
        try publish("second")
        try await Task.sleep(for: .milliseconds(2_500))  // past the next once-a-second check
        (code, output) = try await etcdctl(ports[0], ["--cacert=\(path("second-ca.pem"))", "get", "k", "--print-value-only"])
        #expect(code == 0 && output == "v\n", "the rotated certificate is served: \(output)")
        await member.shutdown()
    }

    /// `--auto-tls` and `--peer-auto-tls`: each member makes a self-signed
    /// certificate under its data directory (kept across a restart); clients
    /// connect skipping verification and not otherwise; members
    /// replicate over TLS without checking each other's certificates.
    @Test func autoTLSMakesSelfSignedCertificates() async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let ports = try freePortsForTests(4)
        let names = ["a", "b"]
        let initialCluster = names.indices.map { "\(names[$0])=https://127.0.0.1:\(ports[2 + $0])" }.joined(separator: ",")
        var configurations: [MemberConfiguration] = []
        for i in names.indices {
            var c = configuration(names[i], clientPort: ports[i], peerPort: ports[2 + i], peerScheme: "https")
            c.initialCluster = initialCluster
            c.autoTLS = true
            c.peerAutoTLS = true
            try c.validate()
            configurations.append(c)
        }
        var members: [EnsembleMember] = []
        try await withThrowingTaskGroup(of: EnsembleMember.self) { group in
            for c in configurations { group.addTask { try await EnsembleMember.start(c) } }
            for try await member in group { members.append(member) }
        }
        // etcdctl 3.4 skips verification only with both flags (so with real etcd).
        let skip = ["--insecure-skip-tls-verify", "--insecure-transport=false"]
        var (code, output) = (Int32(1), "")
        for _ in 0..<100 where code != 0 {
            (code, output) = try await etcdctl(ports[0], skip + ["put", "auto", "tls"])
            if code != 0 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(code == 0 && output == "OK\n", "\(output)")
        (code, output) = try await etcdctl(ports[1], skip + ["get", "auto", "--print-value-only"])
        #expect(code == 0 && output == "tls\n", "replicated over peer TLS: \(output)")
        (code, output) = try await etcdctl(ports[0], ["get", "auto"])
        #expect(code != 0, "a self-signed certificate is not trusted: \(output)")
        let made = configurations[0].dataDirectory + "/fixtures/client/cert.pem"
        let certificate = try String(contentsOfFile: made, encoding: .utf8)
        let key = configurations[0].dataDirectory + "/fixtures/peer/key.pem"
        let mode = try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int
        #expect(mode == 0o600, "the key is the owner's only")
        let (verified, verification) = try await runProcess("/usr/bin/openssl", ["verify", "-CAfile", made, made])
        #expect(verified == 0, "self-signed: \(verification)")
        let handshake = try await handshake(ports[2], [])
        #expect(handshake.contains("TLSv1.3"), "the peer port speaks TLS: \(handshake)")

        for member in members { await member.shutdown(handOff: false) }
        // A restart serves the same certificate.
        let again = try await EnsembleMember.start(configurations[0])
        #expect(try String(contentsOfFile: made, encoding: .utf8) == certificate)
        await again.shutdown(handOff: false)
    }

    /// `--tls-max-version`, `--tls-min-version` and `--cipher-suites` (Go's
    /// names) decide what a handshake may use; bad values are refused with
    /// etcd's messages.
    @Test func versionsAndCipherSuitesAreEnforced() async throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try certificates("server")
        let ports = try freePortsForTests(4)
        var c = configuration("ciphers", clientPort: ports[0], peerPort: ports[1])
        c.certFile = path("server.pem")
        c.keyFile = path("server.key")
        c.tlsMaxVersion = "TLS1.2"
        c.cipherSuites = ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]
        var member = try await EnsembleMember.start(c)
        var output = try await handshake(ports[0], ["-tls1_2"])
        #expect(output.contains("ECDHE-ECDSA-AES256-GCM-SHA384"), "\(output)")
        var (isRefused, refusal) = try await refused(ports[0], ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"])
        #expect(isRefused, "a suite left out is refused: \(refusal)")
        (isRefused, refusal) = try await refused(ports[0], ["-tls1_3"])
        #expect(isRefused, "TLS 1.3 is above the maximum: \(refusal)")
        let (code, answer) = try await etcdctl(ports[0], ["--cacert=\(path("server-ca.pem"))", "put", "k", "v"])
        #expect(code == 0 && answer == "OK\n", "etcdctl negotiates the allowed suite: \(answer)")
        await member.shutdown()

        c = configuration("modern", clientPort: ports[2], peerPort: ports[3])
        c.certFile = path("server.pem")
        c.keyFile = path("server.key")
        c.tlsMinVersion = "TLS1.3"
        member = try await EnsembleMember.start(c)
        (isRefused, refusal) = try await refused(ports[2], ["-tls1_2"])
        #expect(isRefused, "TLS 1.2 is below the minimum: \(refusal)")
        output = try await handshake(ports[2], ["-tls1_3"])
        #expect(output.contains("TLSv1.3"), "\(output)")
        await member.shutdown()

        c.cipherSuites = ["TLS_ECDHE_RSA_WITH_AES_128_GCM"]
        #expect(throws: ConfigurationError("--cipher-suites: unexpected TLS cipher suite \"TLS_ECDHE_RSA_WITH_AES_128_GCM\"")) { try c.validate() }
        c.cipherSuites = ["TLS_RSA_WITH_RC4_128_SHA"]
        #expect(throws: ConfigurationError("--cipher-suites: TLS cipher suite \"TLS_RSA_WITH_RC4_128_SHA\" is not supported (BoringSSL has no such suite)")) {
            try c.validate()
        }
        c.cipherSuites = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
        #expect(throws: ConfigurationError("cipher suites cannot be configured when only TLS1.3 is enabled")) { try c.validate() }
        c.cipherSuites = []
        c.tlsMinVersion = "TLS1.1"
        #expect(throws: ConfigurationError("--tls-min-version: unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)")) {
            try c.validate()
        }
        let yaml = try MemberConfiguration(yaml: """
            cipher-suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
            tls-min-version: TLS1.2
            tls-max-version: TLS1.3
            client-transport-security:
              auto-tls: true
            peer-transport-security:
              auto-tls: true
            """)
        #expect(yaml.cipherSuites == ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"])
        #expect(yaml.tlsMaxVersion == "TLS1.3" && yaml.autoTLS && yaml.peerAutoTLS)
    }

    @Test func certificateHostsAreIPAddressesOrNames() {
        #expect(CertificateFactory.ipAddressBytes("127.0.0.1") == [127, 0, 0, 1])
        #expect(CertificateFactory.ipAddressBytes("[::1]") == [UInt8](repeating: 0, count: 15) + [1])
        #expect(CertificateFactory.ipAddressBytes("fe80::2") == [0xfe, 0x80] + [UInt8](repeating: 0, count: 13) + [2])
        #expect(CertificateFactory.ipAddressBytes("localhost") == nil)
        #expect(CertificateFactory.ipAddressBytes("10.0.0") == nil)
    }

    /// Every cipher-suite name accepted makes a working context (NIOSSL
    /// crashes on a suite its BoringSSL lacks), and TLS 1.3's names are
    /// accepted and ignored, as in etcd 3.5.
    @Test func everyAcceptedCipherSuiteLoads() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try certificates("server")
        var c = configuration("all", clientPort: 1, peerPort: 2)
        c.certFile = path("server.pem")
        c.keyFile = path("server.key")
        for name in TLSPolicy.goCipherSuites.keys.sorted() + ["TLS_AES_128_GCM_SHA256"] {
            c.cipherSuites = [name]
            #expect(throws: Never.self, "\(name)") { _ = try c.clientTLSServerContext() }
        }
    }
}
