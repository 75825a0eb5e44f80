import Logging

/// One port's TLS files from its flags — the client port's (`--cert-file`,
/// `--key-file`, `--trusted-ca-file`, `--client-cert-auth`, `--auto-tls`) or
/// the peer port's (the same with `--peer-`).
struct PortTLS {
    var cert: String
    var key: String
    /// The CA the other side's certificate must chain to; "" for none. As in
    /// etcd's TLSInfo.ServerConfig, a trusted CA alone already requires one.
    var trustedCA: String
    /// Made here for auto TLS.
    var selfSigned: Bool
    /// The flag prefix, for messages: "--" or "--peer-".
    var flag: String
}

extension MemberConfiguration {
    /// The certificate and key given, else auto TLS's (made now if not there
    /// yet), and the trusted CA. Auto TLS replaces all of it, as in etcd: no
    /// CA signed a self-signed certificate, so the CA flags are ignored.
    func portTLS(peer: Bool, logger: Logger = EnsembleMember.silent) throws(ConfigurationError) -> PortTLS {
        let flag = peer ? "--peer-" : "--"
        let (cert, key, auto, ca, auth) = peer
            ? (peerCertFile, peerKeyFile, peerAutoTLS, peerTrustedCAFile, peerClientCertAuth)
            : (certFile, keyFile, autoTLS, trustedCAFile, clientCertAuth)
        if !cert.isEmpty, !key.isEmpty {
            if auth, ca.isEmpty { throw ConfigurationError("\(flag)client-cert-auth needs \(flag)trusted-ca-file") }
            return PortTLS(cert: cert, key: key, trustedCA: ca, selfSigned: false, flag: flag)
        }
        guard auto else { throw ConfigurationError("TLS key/cert (\(flag)cert-file, \(flag)key-file) must be provided") }
        if !ca.isEmpty || auth {
            logger.warning("\(flag)auto-tls: ignoring \(flag)trusted-ca-file and \(flag)client-cert-auth (self-signed, as etcd)")
        }
        let urls = peer ? listenPeerURLs + initialAdvertisePeerURLs : listenClientURLs + advertiseClientURLs
        // (A unixs:// URL's host too, as etcd's self-signed certificate takes it.)
        let hosts = Set(urls.compactMap { url -> String? in
            if let host = HostPort(url: url)?.host { return host }
            guard case .unix(let path)? = ClientListenAddress(url: url), let colon = path.lastIndex(of: ":") else { return nil }
            return String(path[..<colon])
        }).sorted()
        let made = try CertificateFactory.selfSignedFiles(in: dataDirectory + (peer ? "/fixtures/peer" : "/fixtures/client"), hosts: hosts)
        return PortTLS(cert: made.cert, key: made.key, trustedCA: "", selfSigned: true, flag: flag)
    }
}
