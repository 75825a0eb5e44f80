import NIOSSL

/// TLS on the client port, from etcd's flags: `https://` listen-client-urls
/// serve `--cert-file`/`--key-file`; with `--trusted-ca-file` (etcd 3.4:
/// whether or not `--client-cert-auth` is given) a client must present a
/// certificate that chains to it. ALPN offers
/// http/1.1 and h2, since gRPC and the HTTP endpoints share the port.
///
/// The files are read once, at start: a missing or malformed one is a
/// configuration error naming its flag. A member reaching another member's
/// `https://` client URL (``LeaderForwarder``) trusts `--trusted-ca-file`
/// (or the system's roots) and presents its own certificate, as etcd's
/// gateway does.
extension MemberConfiguration {
    /// The context for `https://` client listeners; nil when there is none.
    public func clientTLSServerContext() throws(ConfigurationError) -> NIOSSLContext? {
        guard listenClientURLs.contains(where: { $0.hasPrefix("https://") }) else { return nil }
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try TLSFiles.certificates("--cert-file", certFile).map { .certificate($0) },
            privateKey: .privateKey(try TLSFiles.privateKey("--key-file", keyFile)))
        tls.minimumTLSVersion = .tlsv12
        // The server's order wins: gRPC clients offer only h2, while curl and
        // browsers, which offer both, get HTTP/1.1, where the HTTP endpoints
        // (/health, /metrics) are served. The bytes decide in the end
        // (ProtocolSniffer).
        tls.applicationProtocols = ["http/1.1", "h2"]
        if clientCertAuth || !trustedCAFile.isEmpty {
            // As etcd's TLSInfo.ServerConfig: a trusted CA alone already
            // means RequireAndVerifyClientCert.
            tls.trustRoots = .certificates(try TLSFiles.certificates("--trusted-ca-file", trustedCAFile))
            tls.certificateVerification = .noHostnameVerification
        }
        tls.shutdownTimeout = TLSFiles.shutdownTimeout
        return try TLSFiles.context(tls)
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
    public func clientTLSClientContext() throws(ConfigurationError) -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = ["h2"]
        tls.shutdownTimeout = TLSFiles.shutdownTimeout
        var roots: [NIOSSLCertificate] = []
        if !trustedCAFile.isEmpty { roots += try TLSFiles.certificates("--trusted-ca-file", trustedCAFile) }
        if !peerTrustedCAFile.isEmpty { roots += try TLSFiles.certificates("--peer-trusted-ca-file", peerTrustedCAFile) }
        if roots.isEmpty {
            tls.certificateVerification = .none
        } else {
            tls.trustRoots = .certificates(roots)
        }
        if !peerCertFile.isEmpty, !peerKeyFile.isEmpty {
            tls.certificateChain = try TLSFiles.certificates("--peer-cert-file", peerCertFile).map { .certificate($0) }
            tls.privateKey = .privateKey(try TLSFiles.privateKey("--peer-key-file", peerKeyFile))
        } else if !certFile.isEmpty, !keyFile.isEmpty {
            tls.certificateChain = try TLSFiles.certificates("--cert-file", certFile).map { .certificate($0) }
            tls.privateKey = .privateKey(try TLSFiles.privateKey("--key-file", keyFile))
        }
        return try TLSFiles.context(tls)
    }
}
