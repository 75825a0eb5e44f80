import NIOCore
import NIOSSL

/// etcdctl's TLS flags for a client of `https://` endpoints: `--cacert`
/// (the CA bundle the server's certificate must chain to; the system's roots
/// when absent), `--cert` and `--key` (a client certificate, for servers
/// started with `--client-cert-auth`), and `--insecure-skip-tls-verify`.
public struct ClientTLSFiles: Sendable, Equatable {
    public var caCert: String?
    public var cert: String?
    public var key: String?
    public var insecureSkipVerify = false

    public init(caCert: String? = nil, cert: String? = nil, key: String? = nil, insecureSkipVerify: Bool = false) {
        self.caCert = caCert
        self.cert = cert
        self.key = key
        self.insecureSkipVerify = insecureSkipVerify
    }

    /// A file could not be read, or the pair does not match; the text says which.
    public struct SetupError: Error, CustomStringConvertible, Equatable {
        public var description: String
        public init(_ description: String) { self.description = description }
    }

    /// The context for ``GRPCConnection/Options/tls``.
    public func context() throws(SetupError) -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = ["h2"]
        tls.shutdownTimeout = .seconds(1)
        if let caCert {
            tls.trustRoots = .certificates(try Self.readCertificates("--cacert", caCert))
        }
        switch (cert, key) {
        case let (cert?, key?):
            tls.certificateChain = try Self.readCertificates("--cert", cert).map { .certificate($0) }
            tls.privateKey = .privateKey(try Self.readPrivateKey("--key", key))
        case (nil, nil): break
        default: throw SetupError("--cert and --key go together")
        }
        if insecureSkipVerify { tls.certificateVerification = .none }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw SetupError("TLS: \(error) (does --key match --cert?)")
        }
    }

    /// The PEM certificates in `path` (at least one), named after `flag` in errors.
    public static func readCertificates(_ flag: String, _ path: String) throws(SetupError) -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw SetupError("\(flag) \(path): cannot read PEM certificates: \(error)")
        }
        guard !certificates.isEmpty else { throw SetupError("\(flag) \(path): no certificate in the file") }
        return certificates
    }

    /// The PEM private key in `path`, named after `flag` in errors.
    public static func readPrivateKey(_ flag: String, _ path: String) throws(SetupError) -> NIOSSLPrivateKey {
        do {
            return try NIOSSLPrivateKey(file: path, format: .pem)
        } catch {
            throw SetupError("\(flag) \(path): cannot read a PEM private key: \(error)")
        }
    }
}
