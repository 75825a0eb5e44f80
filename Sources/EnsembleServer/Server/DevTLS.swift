import Foundation

/// The certificates of `ensemble dev --tls`, under `<data-dir>/tls`: a CA,
/// one certificate for the members (127.0.0.1 and localhost; served on the
/// client and peer ports, presented to each other) and one for clients such
/// as etcdctl. Made on the first start and reused after, so commands and
/// scripts that name them keep working across restarts, until a day before
/// they expire (a year), when new ones are made.
public struct DevTLS: Sendable {
    public let directory: String
    public var ca: String { directory + "/ca.pem" }
    public var memberCert: String { directory + "/member.pem" }
    public var memberKey: String { directory + "/member.key" }
    public var clientCert: String { directory + "/client.pem" }
    public var clientKey: String { directory + "/client.key" }

    /// The files in `<dataDirectory>/tls`, made if any is missing.
    public init(dataDirectory: String) throws {
        directory = dataDirectory + "/tls"
        let files = FileManager.default
        let current = [memberKey, clientKey].allSatisfy(files.fileExists(atPath:))
            && [ca, memberCert, clientCert].allSatisfy { CertificateFactory.isCurrent($0) }
        guard !current else { return }
        try files.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        // The CA's key signs these two and is not kept: new ones come with a new CA.
        let authority = try CertificateFactory.authority(commonName: "ensemble dev CA")
        try CertificateFactory.writeFile(ca, authority.certificatePEM, mode: 0o644)
        let member = try CertificateFactory.issue(commonName: "ensemble dev member", hosts: ["127.0.0.1", "localhost"], by: authority)
        try CertificateFactory.write(member, cert: memberCert, key: memberKey)
        let client = try CertificateFactory.issue(commonName: "ensemble dev client", hosts: [], by: authority)
        try CertificateFactory.write(client, cert: clientCert, key: clientKey)
    }

    /// Client and peer TLS with client certificates required on both.
    func apply(to configuration: inout MemberConfiguration) {
        configuration.certFile = memberCert
        configuration.keyFile = memberKey
        configuration.trustedCAFile = ca
        configuration.clientCertAuth = true
        configuration.peerCertFile = memberCert
        configuration.peerKeyFile = memberKey
        configuration.peerTrustedCAFile = ca
        configuration.peerClientCertAuth = true
    }

    /// etcdctl's flags for this cluster.
    public var etcdctlFlags: String { "--cacert=\(ca) --cert=\(clientCert) --key=\(clientKey)" }
}
