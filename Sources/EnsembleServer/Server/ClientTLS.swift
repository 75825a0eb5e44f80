import NIOSSL

/// TLS on the client port, from etcd's flags: `https://` listen-client-urls
/// serve `--cert-file`/`--key-file`; with `--client-cert-auth` a client must
/// present a certificate that chains to `--trusted-ca-file`. ALPN offers
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
        if clientCertAuth {
            tls.trustRoots = .certificates(try TLSFiles.certificates("--trusted-ca-file", trustedCAFile))
            tls.certificateVerification = .noHostnameVerification
        }
        return try TLSFiles.context(tls)
    }

    /// The context for connecting to members' `https://` client URLs.
    public func clientTLSClientContext() throws(ConfigurationError) -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = ["h2"]
        if !trustedCAFile.isEmpty {
            tls.trustRoots = .certificates(try TLSFiles.certificates("--trusted-ca-file", trustedCAFile))
        }
        if !certFile.isEmpty, !keyFile.isEmpty {
            tls.certificateChain = try TLSFiles.certificates("--cert-file", certFile).map { .certificate($0) }
            tls.privateKey = .privateKey(try TLSFiles.privateKey("--key-file", keyFile))
        }
        return try TLSFiles.context(tls)
    }
}
