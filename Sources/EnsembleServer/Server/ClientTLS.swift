import Logging
import NIOSSL

/// TLS on the client port, from etcd's flags: `https://` listen-client-urls
/// serve `--cert-file`/`--key-file` (or `--auto-tls`'s self-signed pair);
/// with `--trusted-ca-file` (etcd 3.4: whether or not `--client-cert-auth`
/// is given) a client must present a certificate that chains to it. ALPN
/// offers http/1.1 and h2, since gRPC and the HTTP endpoints share the port.
///
/// Missing or malformed files at start are configuration errors naming
/// their flag; later changes to them are picked up for new connections
/// (``ReloadingTLSContext``). A member reaching another member's `https://`
/// client URL (``LeaderForwarder``) trusts `--trusted-ca-file` (or the
/// system's roots) and presents its own certificate, as etcd's gateway does.
extension MemberConfiguration {
    /// The context for `https://` client listeners; nil when there is none.
    public func clientTLSServerContext(logger: Logger = EnsembleMember.silent) throws(ConfigurationError) -> ReloadingTLSContext? {
        guard listenClientURLs.contains(where: ClientListenAddress.isSecure) else { return nil }
        let port = try portTLS(peer: false, logger: logger)
        let policy = try tlsPolicy()
        return try ReloadingTLSContext(paths: [port.cert, port.key, port.trustedCA], logger: logger) { () throws(ConfigurationError) in
            var tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try TLSFiles.certificates("--cert-file", port.cert).map { .certificate($0) },
                privateKey: .privateKey(try TLSFiles.privateKey("--key-file", port.key)))
            policy.apply(to: &tls)
            // The server's order wins: gRPC clients offer only h2, while curl and
            // browsers, which offer both, get HTTP/1.1, where the HTTP endpoints
            // (/health, /metrics) are served. The bytes decide in the end
            // (PrefaceSniffer).
            tls.applicationProtocols = ["http/1.1", "h2"]
            if !port.trustedCA.isEmpty {
                tls.trustRoots = .certificates(try TLSFiles.certificates("--trusted-ca-file", port.trustedCA))
                tls.certificateVerification = .noHostnameVerification
            }
            return try TLSFiles.context(tls)
        }
    }

    /// The context for connecting to members' `https://` client URLs (the
    /// leader forwarder). The leader's certificate is checked against
    /// `--trusted-ca-file` and `--peer-trusted-ca-file`; with neither, the
    /// usual setup for TLS to external clients only (they get the CA with
    /// etcdctl's `--cacert`), a member has nothing to check it against and
    /// does not: it reached that URL through the replicated membership, and
    /// the Raft traffic between the same members is then not authenticated
    /// either. It presents the peer certificate when there is one (etcd's
    /// carry both usages), else the server's.
    public func clientTLSClientContext(logger: Logger = EnsembleMember.silent) throws(ConfigurationError) -> ReloadingTLSContext {
        let policy = try tlsPolicy()
        let cas = [("--trusted-ca-file", trustedCAFile), ("--peer-trusted-ca-file", peerTrustedCAFile)].filter { !$0.1.isEmpty }
        // A self-signed peer certificate would not pass a leader that checks
        // client certificates; the client port's may.
        var own = listenPeerURLs.contains(where: { $0.hasPrefix("https://") }) ? try? portTLS(peer: true) : nil
        if own?.selfSigned ?? true { own = try? portTLS(peer: false) }
        let presented = own
        return try ReloadingTLSContext(
            paths: cas.map(\.1) + [presented?.cert, presented?.key].compactMap { $0 }, logger: logger
        ) { () throws(ConfigurationError) in
            var tls = TLSConfiguration.makeClientConfiguration()
            policy.apply(to: &tls)
            tls.applicationProtocols = ["h2"]
            var roots: [NIOSSLCertificate] = []
            for (flag, path) in cas { roots += try TLSFiles.certificates(flag, path) }
            if roots.isEmpty {
                tls.certificateVerification = .none
            } else {
                tls.trustRoots = .certificates(roots)
            }
            if let presented {
                tls.certificateChain = try TLSFiles.certificates(presented.flag + "cert-file", presented.cert).map { .certificate($0) }
                tls.privateKey = .privateKey(try TLSFiles.privateKey(presented.flag + "key-file", presented.key))
            }
            return try TLSFiles.context(tls)
        }
    }
}
