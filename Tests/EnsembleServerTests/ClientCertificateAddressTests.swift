@testable import EnsembleServer
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
