@testable import EnsembleServer
import NIOCore
import NIOPosix
import NIOSSL
import Raft
import RaftTransport
import Synchronization
import Testing

/// etcd 3.4's check that a member's client certificate names the address it
/// connects from (pkg/transport's checkCertSAN), with lookups answered by a
/// table; `TLSTests` runs it between real members.
@Suite struct ClientCertificateAddressTests {
    let v4: [UInt8] = [127, 0, 0, 2]
    /// 10.0.0.7 is called "node7.example.com" both ways; nothing else resolves.
    let resolver = ClientCertificateAddress.Resolver(
        names: { $0 == "10.0.0.7" ? .success(["node7.example.com."]) : .failure(.init(description: "lookup \($0): no such host")) },
        addresses: { $0 == "node7.example.com" ? .success(["10.0.0.7"]) : .failure(.init(description: "lookup \($0): no such host")) })

    func refusal(ips: [[UInt8]] = [], dns: [String] = [], from host: String) -> String? {
        ClientCertificateAddress.refusal(ipAddresses: ips, dnsNames: dns, host: host, resolver: resolver)
    }

    @Test func addressesMustIncludeTheConnectionsAddress() {
        #expect(refusal(ips: [v4], from: "127.0.0.2") == nil)
        #expect(refusal(ips: [[10, 0, 0, 1], v4], from: "127.0.0.1") == "x509: certificate is valid for 10.0.0.1, 127.0.0.2, not 127.0.0.1")
        // An IPv4 address written as IPv4-mapped IPv6 is the same address (Go's IP.Equal).
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2]
        #expect(refusal(ips: [mapped], from: "127.0.0.2") == nil)
        #expect(refusal(ips: [v4], from: "::ffff:127.0.0.2") == nil)
    }

    @Test func aCertificateWithoutAddressesOrNamesPasses() {
        #expect(refusal(from: "192.0.2.1") == nil)
    }

    @Test func dnsNamesMatchByReverseOrForwardLookup() {
        // Reverse: 10.0.0.7 is node7.example.com (the trailing dot dropped), also under a wildcard.
        #expect(refusal(dns: ["node7.example.com"], from: "10.0.0.7") == nil)
        #expect(refusal(dns: ["*.example.com"], from: "10.0.0.7") == nil)
        // An address that does not match falls through to the names.
        #expect(refusal(ips: [v4], dns: ["node7.example.com"], from: "10.0.0.7") == nil)
        #expect(
            refusal(dns: ["node8.example.com", "*.example.org"], from: "10.0.0.7")
                == "tls: \"10.0.0.7\" does not match any of DNSNames [\"node8.example.com\" \"*.example.org\"] (lookup node8.example.com: no such host)")
        #expect(
            refusal(ips: [v4], dns: ["node7.example.com"], from: "10.0.0.8")
                == "tls: \"10.0.0.8\" does not match any of DNSNames [\"node7.example.com\"] (lookup 10.0.0.8: no such host)")
    }

    @Test func theSystemResolverKnowsLocalhost() {
        // /etc/hosts: 127.0.0.1 is localhost both ways.
        #expect(ClientCertificateAddress.refusal(ipAddresses: [], dnsNames: ["localhost"], host: "127.0.0.1", resolver: .system) == nil)
        #expect(ClientCertificateAddress.refusal(ipAddresses: [], dnsNames: ["name.invalid"], host: "127.0.0.1", resolver: .system) != nil)
    }
}

/// The check runs while the connecting member already sends (TLS 1.3: the
/// client's handshake is done before the server has looked at its
/// certificate). NIOSSL closes a connection that sends during a pending
/// check, so without holding the bytes a slow check (a DNS lookup) lost every
/// connection (review finding).
@Suite(.timeLimit(.minutes(1))) struct SlowClientCertificateCheckTests {
    @Test func aSlowCheckHoldsThePeersBytesRatherThanDropTheConnection() async throws {
        let ca = try CertificateFactory.authority(commonName: "test-ca")
        let member = try CertificateFactory.issue(commonName: "member", hosts: ["127.0.0.1"], by: ca)
        let caCertificate = try NIOSSLCertificate(bytes: Array(ca.certificatePEM.utf8), format: .pem)
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(member.certificatePEM.utf8)).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(bytes: Array(member.keyPEM.utf8), format: .pem)
        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        server.trustRoots = .certificates([caCertificate])
        server.certificateVerification = .noHostnameVerification
        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = chain
        client.privateKey = .privateKey(key)
        client.trustRoots = .certificates([caCertificate])
        let serverContext = try NIOSSLContext(configuration: server)
        let clientContext = try NIOSSLContext(configuration: client)
        let checks = Atomic<Int>(0)
        let slowCheck: NIOPeerTransport.TLS.ClientCheck = { _, channel in
            checks.add(1, ordering: .relaxed)
            return channel.eventLoop.scheduleTask(in: .milliseconds(500)) {}.futureResult
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let receiver = NIOPeerTransport(group: group, tls: .init(server: serverContext, client: clientContext, checkClient: slowCheck))
        let sender = NIOPeerTransport(group: group, tls: .init(server: serverContext, client: clientContext))
        let port = try await receiver.listen(host: "127.0.0.1", port: 0)
        sender.setPeer(2, .init(host: "127.0.0.1", port: port))
        let received = Mutex<[UInt64]>([])
        receiver.register(2) { messages in received.withLock { $0 += messages.map(\.index) } }
        // A message every 10 ms from the start, as a busy member sends.
        var index: UInt64 = 0
        let deadline = ContinuousClock.now + .seconds(10)
        while received.withLock({ $0.count }) < 50 && ContinuousClock.now < deadline {
            index += 1
            sender.send([Message(kind: .append, from: 1, to: 2, term: 1, index: index)])
            try await Task.sleep(for: .milliseconds(10))
        }
        let got = received.withLock { $0 }
        #expect(got.count >= 50, "\(got.count) messages arrived")
        #expect(got == got.sorted(), "in order")
        #expect(checks.load(ordering: .relaxed) == 1, "one connection, checked once, never dropped")
        await sender.shutdown()
        await receiver.shutdown()
        try await group.shutdownGracefully()
    }
}
