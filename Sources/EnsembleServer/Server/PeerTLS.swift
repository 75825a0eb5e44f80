import NIOSSL
import RaftTransport

/// TLS between members, from etcd's flags: `https://` peer URLs serve
/// `--peer-cert-file`/`--peer-key-file` and present the same certificate
/// when connecting to other members, whose certificates are checked against
/// `--peer-trusted-ca-file` (or the system's roots) and the peer URL's host
/// or IP address. With `--peer-trusted-ca-file` (etcd 3.4: whether or not
/// `--peer-client-cert-auth` is given) a member accepts only members whose
/// certificate that CA signed. All members of a cluster use TLS or none do.
extension MemberConfiguration {
    /// The peer transport's contexts; nil when the peer URLs are `http://`.
    public func peerTLS() throws(ConfigurationError) -> NIOPeerTransport.TLS? {
        guard (listenPeerURLs + initialAdvertisePeerURLs).contains(where: { $0.hasPrefix("https://") }) else { return nil }
        let chain = try TLSFiles.certificates("--peer-cert-file", peerCertFile).map { NIOSSLCertificateSource.certificate($0) }
        let key = try TLSFiles.privateKey("--peer-key-file", peerKeyFile)
        let roots = peerTrustedCAFile.isEmpty ? nil : try TLSFiles.certificates("--peer-trusted-ca-file", peerTrustedCAFile)

        var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        server.minimumTLSVersion = .tlsv12
        if let roots {
            server.trustRoots = .certificates(roots)
            server.certificateVerification = .noHostnameVerification
        }
        server.shutdownTimeout = TLSFiles.shutdownTimeout
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv12
        client.certificateChain = chain
        client.privateKey = .privateKey(key)
        client.shutdownTimeout = TLSFiles.shutdownTimeout
        if let roots { client.trustRoots = .certificates(roots) }
        return NIOPeerTransport.TLS(server: try TLSFiles.context(server), client: try TLSFiles.context(client))
    }
}
