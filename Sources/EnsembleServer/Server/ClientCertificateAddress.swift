#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// etcd 3.4's check of a member connecting to the peer port: the client
/// certificate it presented must name the address it connects from. A
/// certificate with IP addresses passes when one is the connection's; one
/// with DNS names when a name resolves to that address, or the address's
/// reverse lookup gives one of them (`*.example.com` matches any name under
/// it there). A certificate with no IP address and no DNS name passes, as in
/// etcd. So a certificate copied off one member does not let another machine
/// join the cluster's traffic. `--experimental-peer-skip-client-san-verification`
/// turns it off (etcd's flag).
enum ClientCertificateAddress {
    /// Name lookups, blocking (run off the event loops).
    struct Resolver: Sendable {
        /// The names the reverse lookup of an address gives.
        var names: @Sendable (_ address: String) -> Result<[String], LookupError>
        /// The addresses a name resolves to, as text.
        var addresses: @Sendable (_ name: String) -> Result<[String], LookupError>

        static let system = Resolver(names: reverseLookup, addresses: forwardLookup)
    }

    struct LookupError: Error, Equatable {
        var description: String
    }

    /// Why `host` (an IP address in text) may not present a certificate with
    /// these names; nil when it may. The messages are Go's and etcd's.
    static func refusal(ipAddresses: [[UInt8]], dnsNames: [String], host: String, resolver: Resolver) -> String? {
        if ipAddresses.isEmpty && dnsNames.isEmpty { return nil }
        if !ipAddresses.isEmpty {
            if let remote = bytes(ofAddress: host), ipAddresses.contains(where: { canonical($0) == canonical(remote) }) {
                return nil
            }
            if dnsNames.isEmpty {
                let valid = ipAddresses.compactMap(text(ofAddress:)).joined(separator: ", ")
                return "x509: certificate is valid for \(valid), not \(host)"
            }
        }
        var lastError: LookupError?
        let wildcards = dnsNames.filter { $0.hasPrefix("*.") }.map { String($0.dropFirst()) }
        let names = dnsNames.filter { !$0.hasPrefix("*.") }
        switch resolver.names(host) {
        case .success(let found):
            for var name in found {
                if name.hasSuffix(".") { name.removeLast() }
                if wildcards.contains(where: { name.hasSuffix($0) }) || names.contains(name) { return nil }
            }
        case .failure(let error):
            lastError = error
        }
        for name in names {
            switch resolver.addresses(name) {
            case .success(let addresses):
                if addresses.contains(host) { return nil }
            case .failure(let error):
                lastError = error
            }
        }
        let quoted = dnsNames.map { "\"\($0)\"" }.joined(separator: " ")
        return "tls: \"\(host)\" does not match any of DNSNames [\(quoted)]" + (lastError.map { " (\($0.description))" } ?? "")
    }

    /// The check as NIOSSL's server handler runs it after a handshake: the
    /// connection's data waits until it passes; a refusal closes it.
    static func verifier(
        resolver: Resolver = .system, refused: @escaping @Sendable (_ remote: String, _ reason: String) -> Void
    ) -> @Sendable (NIOSSLCertificate, any Channel) -> EventLoopFuture<Void> {
        { certificate, channel in
            let eventLoop = channel.eventLoop
            guard let address = channel.remoteAddress, let raw = address.ipAddress else {
                return eventLoop.makeFailedFuture(RefusedError(reason: "no remote address"))
            }
            // As Go reports it: an IPv4 client of a dual-stack socket as IPv4.
            let host = bytes(ofAddress: raw).flatMap(text(ofAddress:)) ?? raw
            let remote = host.contains(":") ? "[\(host)]:\(address.port ?? 0)" : "\(host):\(address.port ?? 0)"
            let (ips, dns): ([[UInt8]], [String])
            do {
                (ips, dns) = try names(in: certificate)
            } catch {
                refused(remote, "\(error)")
                return eventLoop.makeFailedFuture(error)
            }
            // Only DNS names need lookups (blocking): the rest is answered here.
            let addressMatches = bytes(ofAddress: host).map { remote in ips.contains { canonical($0) == canonical(remote) } } ?? false
            if dns.isEmpty || addressMatches {
                if let reason = refusal(ipAddresses: ips, dnsNames: dns, host: host, resolver: resolver) {
                    refused(remote, reason)
                    return eventLoop.makeFailedFuture(RefusedError(reason: reason))
                }
                return eventLoop.makeSucceededVoidFuture()
            }
            // Lookups block a pool thread each and cannot be cancelled: a
            // bounded number at a time, none for a connection already gone.
            guard lookups.add(1, ordering: .relaxed).newValue <= maxLookups else {
                lookups.subtract(1, ordering: .relaxed)
                let reason = "too many certificate name lookups in progress"
                refused(remote, reason)
                return eventLoop.makeFailedFuture(RefusedError(reason: reason))
            }
            return NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop) {
                defer { lookups.subtract(1, ordering: .relaxed) }
                guard channel.isActive else { throw RefusedError(reason: "closed during the check") }
                if let reason = refusal(ipAddresses: ips, dnsNames: dns, host: host, resolver: resolver) {
                    refused(remote, reason)
                    throw RefusedError(reason: reason)
                }
            }
        }
    }

    /// Name lookups under way, over all connections, and the most allowed.
    private static let lookups = Atomic<Int>(0)
    static let maxLookups = 16

    struct RefusedError: Error, CustomStringConvertible {
        var reason: String
        var description: String { reason }
    }

    /// The IP addresses (4 or 16 bytes) and DNS names a certificate's
    /// subject alternative names hold.
    static func names(in certificate: NIOSSLCertificate) throws -> (ipAddresses: [[UInt8]], dnsNames: [String]) {
        let parsed = try Certificate(derEncoded: try certificate.toDERBytes())
        var ips: [[UInt8]] = []
        var dns: [String] = []
        guard let alternatives = try parsed.extensions.subjectAlternativeNames else { return ([], []) }
        for name in alternatives {
            switch name {
            case .ipAddress(let octets): ips.append(Array(octets.bytes))
            case .dnsName(let text): dns.append(text)
            default: continue
            }
        }
        return (ips, dns)
    }

    /// An IPv4-mapped IPv6 address as the IPv4 one (Go's `IP.Equal`).
    static func canonical(_ address: [UInt8]) -> [UInt8] {
        if address.count == 16 && address[..<10].allSatisfy({ $0 == 0 }) && address[10] == 0xff && address[11] == 0xff {
            return Array(address[12...])
        }
        return address
    }

    static func bytes(ofAddress text: String) -> [UInt8]? { CertificateFactory.ipAddressBytes(text) }

    static func text(ofAddress bytes: [UInt8]) -> String? {
        let address = canonical(bytes)
        let family = address.count == 4 ? AF_INET : address.count == 16 ? AF_INET6 : -1
        guard family >= 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok = address.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) } != nil
        return ok ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }

    private static func reverseLookup(_ address: String) -> Result<[String], LookupError> {
        guard let resolved = try? SocketAddress(ipAddress: address, port: 0) else {
            return .failure(LookupError(description: "lookup \(address): not an IP address"))
        }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let status = resolved.withSockAddr { pointer, size in
            getnameinfo(pointer, socklen_t(size), &host, socklen_t(host.count), nil, 0, NI_NAMEREQD)
        }
        guard status == 0 else { return .failure(LookupError(description: "lookup \(address): \(gaiMessage(status))")) }
        return .success([String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)])
    }

    private static func forwardLookup(_ name: String) -> Result<[String], LookupError> {
        var hints = addrinfo()
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(name, nil, &hints, &list)
        guard status == 0 else { return .failure(LookupError(description: "lookup \(name): \(gaiMessage(status))")) }
        defer { freeaddrinfo(list) }
        var addresses: [String] = []
        var next = list
        while let info = next?.pointee {
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if let address = info.ai_addr,
                getnameinfo(address, info.ai_addrlen, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0,
                let text = bytes(ofAddress: String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
                    .flatMap(text(ofAddress:))
            {
                addresses.append(text)
            }
            next = info.ai_next
        }
        return .success(addresses)
    }

    private static func gaiMessage(_ status: Int32) -> String {
        status == EAI_NONAME ? "no such host" : String(cString: gai_strerror(status))
    }
}
