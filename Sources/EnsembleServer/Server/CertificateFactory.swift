#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import Foundation
import NIOCore
import SwiftASN1
import X509

/// Certificates Ensemble makes itself (ECDSA P-256, SHA-256): a member's
/// self-signed one for `--auto-tls`/`--peer-auto-tls`, as etcd makes, and a
/// CA with certificates it signs for `ensemble dev --tls`.
public enum CertificateFactory {
    /// A certificate and its private key, PEM-encoded, as written to files.
    public struct Issued {
        public var certificatePEM: String
        public var keyPEM: String
        fileprivate var certificate: Certificate
        fileprivate var key: P256.Signing.PrivateKey
    }

    /// A certificate for `hosts` (IP addresses or DNS names) usable by a
    /// server and a client, signed by `authority` or by its own key.
    public static func issue(
        commonName: String, hosts: [String], by authority: Issued? = nil, validity: Duration = .seconds(365 * 24 * 3600)
    ) throws -> Issued {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("ensemble")
            CommonName(commonName)
        }
        let names = hosts.map { host in ipAddressBytes(host).map { GeneralName.ipAddress(ASN1OctetString(contentBytes: $0[...])) } ?? .dnsName(host) }
        let extensions = try Certificate.Extensions {
            Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
            try ExtendedKeyUsage([.serverAuth, .clientAuth])
            Critical(BasicConstraints.notCertificateAuthority)
            if !names.isEmpty { SubjectAlternativeNames(names) }
        }
        return try sign(key: key, subject: subject, extensions: extensions, by: authority, validity: validity)
    }

    /// A certificate authority for ``issue(commonName:hosts:by:validity:)``.
    public static func authority(commonName: String, validity: Duration = .seconds(365 * 24 * 3600)) throws -> Issued {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("ensemble")
            CommonName(commonName)
        }
        let extensions = try Certificate.Extensions {
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
        }
        return try sign(key: key, subject: subject, extensions: extensions, by: nil, validity: validity)
    }

    /// `directory`/cert.pem and key.pem (0600) for `--auto-tls`: made,
    /// self-signed for `hosts`, unless both exist already and the certificate
    /// has a day left (etcd reuses them across restarts, expired or not).
    static func selfSignedFiles(in directory: String, hosts: [String]) throws(ConfigurationError) -> (cert: String, key: String) {
        let cert = directory + "/cert.pem"
        let key = directory + "/key.pem"
        if FileManager.default.fileExists(atPath: key), isCurrent(cert) { return (cert, key) }
        do {
            let issued = try issue(commonName: "ensemble auto-tls", hosts: hosts)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try write(issued, cert: cert, key: key)
        } catch {
            throw ConfigurationError("auto TLS: cannot make a certificate in \(directory): \(error)")
        }
        return (cert, key)
    }

    /// Whether the certificate in `path` loads and is valid for `margin` more.
    static func isCurrent(_ path: String, margin: TimeInterval = 24 * 3600) -> Bool {
        guard let pem = try? String(contentsOfFile: path, encoding: .utf8),
              let certificate = try? Certificate(pemEncoded: pem)
        else { return false }
        return certificate.notValidAfter > Date() + margin
    }

    /// Writes the certificate and the key, each to a new file renamed into
    /// place; the key's is created readable by the owner only.
    public static func write(_ issued: Issued, cert: String, key: String) throws {
        try writeFile(key, issued.keyPEM, mode: 0o600)
        try writeFile(cert, issued.certificatePEM, mode: 0o644)
    }

    /// Writes `text` to a new file with `mode`, synced, then renamed over `path`.
    static func writeFile(_ path: String, _ text: String, mode: mode_t) throws {
        let temporary = path + ".tmp"
        unlink(temporary)
        // Created with its final mode: never readable by others, not even briefly.
        let fd = open(temporary, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode)
        guard fd >= 0 else { throw ConfigurationError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let file = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        do {
            try file.write(contentsOf: Data(text.utf8))
            try file.synchronize()
            try file.close()
            guard rename(temporary, path) == 0 else {
                throw ConfigurationError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
        } catch {
            unlink(temporary)
            throw error
        }
    }

    private static func sign(
        key: P256.Signing.PrivateKey, subject: DistinguishedName, extensions: Certificate.Extensions, by authority: Issued?,
        validity: Duration
    ) throws -> Issued {
        // An hour back: clocks of the machines that check it may be behind.
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + Double(validity.components.seconds),
            issuer: authority?.certificate.subject ?? subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions, issuerPrivateKey: .init(authority?.key ?? key))
        return Issued(
            certificatePEM: try certificate.serializeAsPEM().pemString, keyPEM: key.pemRepresentation,
            certificate: certificate, key: key)
    }

    /// The bytes of an IPv4 or IPv6 address (brackets allowed), nil for a name.
    static func ipAddressBytes(_ host: String) -> [UInt8]? {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        guard let address = try? SocketAddress(ipAddress: bare, port: 0) else { return nil }
        // The address inside sockaddr_in (at 4, 4 bytes) or sockaddr_in6 (at 8, 16 bytes).
        let (offset, count): (Int, Int)
        switch address {
        case .v4: (offset, count) = (4, 4)
        case .v6: (offset, count) = (8, 16)
        case .unixDomainSocket: return nil
        }
        return address.withSockAddr { pointer, size in
            guard size >= offset + count else { return nil }
            return Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(pointer) + offset, count: count))
        }
    }
}
