import Logging
import NIOSSL
import RaftTransport

/// TLS between members, from etcd's flags: `https://` peer URLs serve
/// `--peer-cert-file`/`--peer-key-file` and present the same certificate
/// when connecting to other members, whose certificates are checked against
/// `--peer-trusted-ca-file` (or the system's roots) and the peer URL's host
/// or IP address. With `--peer-trusted-ca-file` (etcd 3.4: whether or not
/// `--peer-client-cert-auth` is given) a member accepts only members whose
/// certificate that CA signed. With `--peer-auto-tls` and no files, each
/// member makes its own self-signed certificate and, as etcd does, does not
/// check the others' (encrypted, not authenticated). A member's certificate
/// must also name the address it connects from (``ClientCertificateAddress``).
/// All members of a cluster
/// use TLS or none do. Changed files are picked up for new connections
/// (``ReloadingTLSContext``).
extension MemberConfiguration {
    /// The peer transport's contexts; nil when the peer URLs are `http://`.
    public func peerTLS(logger: Logger = EnsembleMember.silent) throws(ConfigurationError) -> NIOPeerTransport.TLS? {
        guard (listenPeerURLs + initialAdvertisePeerURLs).contains(where: { $0.hasPrefix("https://") }) else { return nil }
        let port = try portTLS(peer: true, logger: logger)
        let policy = try tlsPolicy()
        let paths = [port.cert, port.key, port.trustedCA]
        let server = try ReloadingTLSContext(paths: paths, logger: logger) { () throws(ConfigurationError) in
            var tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try TLSFiles.certificates("--peer-cert-file", port.cert).map { .certificate($0) },
                privateKey: .privateKey(try TLSFiles.privateKey("--peer-key-file", port.key)))
            policy.apply(to: &tls)
            if !port.trustedCA.isEmpty {
                tls.trustRoots = .certificates(try TLSFiles.certificates("--peer-trusted-ca-file", port.trustedCA))
                tls.certificateVerification = .noHostnameVerification
            }
            return try TLSFiles.context(tls)
        }
        let client = try ReloadingTLSContext(paths: paths, logger: logger) { () throws(ConfigurationError) in
            var tls = TLSConfiguration.makeClientConfiguration()
            policy.apply(to: &tls)
            tls.certificateChain = try TLSFiles.certificates("--peer-cert-file", port.cert).map { .certificate($0) }
            tls.privateKey = .privateKey(try TLSFiles.privateKey("--peer-key-file", port.key))
            if !port.trustedCA.isEmpty {
                tls.trustRoots = .certificates(try TLSFiles.certificates("--peer-trusted-ca-file", port.trustedCA))
            } else if port.selfSigned {
                tls.certificateVerification = .none
            }
            return try TLSFiles.context(tls)
        }
        // With a trusted CA every member must present a certificate, and
        // (as in etcd) it must name the address the member connects from.
        let check = port.trustedCA.isEmpty || peerSkipClientSANVerification ? nil : ClientCertificateAddress.verifier { remote, reason in
            logger.warning("rejected connection", metadata: ["remote-addr": "\(remote)", "error": "\(reason)"])
        }
        return NIOPeerTransport.TLS(server: { server.current() }, client: { client.current() }, checkClient: check)
    }
}
