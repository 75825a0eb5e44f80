import NIOCore
import NIOSSL

/// Reading the PEM files named by the TLS flags, with errors that name the flag.
enum TLSFiles {
    /// How long closing a connection waits for the peer's close_notify
    /// (NIOSSL's default of 5 s held up shutdown for every unresponsive peer).
    static let shutdownTimeout = TimeAmount.seconds(1)

    static func certificates(_ flag: String, _ path: String) throws(ConfigurationError) -> [NIOSSLCertificate] {
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw ConfigurationError("\(flag) \(path): cannot read PEM certificates: \(error)")
        }
        guard !certificates.isEmpty else { throw ConfigurationError("\(flag) \(path): no certificate in the file") }
        return certificates
    }

    static func privateKey(_ flag: String, _ path: String) throws(ConfigurationError) -> NIOSSLPrivateKey {
        do {
            return try NIOSSLPrivateKey(file: path, format: .pem)
        } catch {
            throw ConfigurationError("\(flag) \(path): cannot read a PEM private key: \(error)")
        }
    }

    static func context(_ tls: TLSConfiguration) throws(ConfigurationError) -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw ConfigurationError("TLS: \(error) (does --key-file match --cert-file?)")
        }
    }
}
