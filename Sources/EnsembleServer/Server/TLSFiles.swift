import EnsembleClient
import NIOCore
import NIOSSL

/// Reading the PEM files named by the TLS flags (``ClientTLSFiles``' readers),
/// as configuration errors that name the flag.
enum TLSFiles {
    /// How long closing a connection waits for the peer's close_notify
    /// (NIOSSL's default of 5 s held up shutdown for every unresponsive peer).
    static let shutdownTimeout = TimeAmount.seconds(1)

    static func certificates(_ flag: String, _ path: String) throws(ConfigurationError) -> [NIOSSLCertificate] {
        do { return try ClientTLSFiles.readCertificates(flag, path) } catch { throw ConfigurationError(error.description) }
    }

    static func privateKey(_ flag: String, _ path: String) throws(ConfigurationError) -> NIOSSLPrivateKey {
        do { return try ClientTLSFiles.readPrivateKey(flag, path) } catch { throw ConfigurationError(error.description) }
    }

    static func context(_ tls: TLSConfiguration) throws(ConfigurationError) -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw ConfigurationError("TLS: \(error) (does --key-file match --cert-file?)")
        }
    }
}
