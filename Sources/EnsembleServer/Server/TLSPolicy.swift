import NIOSSL

/// The TLS versions and TLS 1.2 cipher suites a member allows, on its client
/// and peer ports alike (`--tls-min-version`, `--tls-max-version`,
/// `--cipher-suites`, with etcd's values and messages).
struct TLSPolicy: Sendable {
    var minimum: TLSVersion = .tlsv12
    var maximum: TLSVersion?
    var ciphers: [NIOTLSCipher] = []

    func apply(to tls: inout TLSConfiguration) {
        tls.minimumTLSVersion = minimum
        tls.maximumTLSVersion = maximum
        if !ciphers.isEmpty { tls.cipherSuiteValues = ciphers }
        tls.shutdownTimeout = TLSFiles.shutdownTimeout
    }

    /// Go's names for the TLS 1.2 cipher suites etcd accepts (crypto/tls)
    /// that BoringSSL has, with their IANA code points. (NIOSSL crashes on a
    /// code point its BoringSSL lacks: only these may reach it.)
    static let goCipherSuites: [String: UInt16] = [
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA": 0x000a,
        "TLS_RSA_WITH_AES_128_CBC_SHA": 0x002f,
        "TLS_RSA_WITH_AES_256_CBC_SHA": 0x0035,
        "TLS_RSA_WITH_AES_128_GCM_SHA256": 0x009c,
        "TLS_RSA_WITH_AES_256_GCM_SHA384": 0x009d,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": 0xc009,
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": 0xc00a,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": 0xc013,
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": 0xc014,
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": 0xc023,
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": 0xc027,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 0xc02b,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": 0xc02c,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": 0xc02f,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": 0xc030,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": 0xcca8,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": 0xcca8,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": 0xcca9,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": 0xcca9,
    ]

    /// Names etcd accepts that BoringSSL does not implement.
    static let unsupportedCipherSuites: Set<String> = [
        "TLS_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    ]

    /// TLS 1.3's suites: accepted and ignored, as etcd 3.5 does (Go, like
    /// BoringSSL, does not let them be chosen).
    static let tls13CipherSuites: Set<String> = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]

    static func version(_ name: String, flag: String) throws(ConfigurationError) -> TLSVersion {
        switch name {
        case "TLS1.2": return .tlsv12
        case "TLS1.3": return .tlsv13
        default: throw ConfigurationError("\(flag): unexpected TLS version \"\(name)\" (must be one of: TLS1.2, TLS1.3)")
        }
    }
}

extension MemberConfiguration {
    /// The policy from the flags; errors name the flag.
    func tlsPolicy() throws(ConfigurationError) -> TLSPolicy {
        var policy = TLSPolicy()
        policy.minimum = try TLSPolicy.version(tlsMinVersion, flag: "--tls-min-version")
        if !tlsMaxVersion.isEmpty {
            let maximum = try TLSPolicy.version(tlsMaxVersion, flag: "--tls-max-version")
            if maximum == .tlsv12 && policy.minimum == .tlsv13 {
                throw ConfigurationError("--tls-min-version TLS1.3 is above --tls-max-version TLS1.2")
            }
            policy.maximum = maximum
        }
        for name in cipherSuites where !TLSPolicy.tls13CipherSuites.contains(name) {
            if TLSPolicy.unsupportedCipherSuites.contains(name) {
                throw ConfigurationError("--cipher-suites: TLS cipher suite \"\(name)\" is not supported (BoringSSL has no such suite)")
            }
            guard let code = TLSPolicy.goCipherSuites[name] else {
                throw ConfigurationError("--cipher-suites: unexpected TLS cipher suite \"\(name)\"")
            }
            policy.ciphers.append(NIOTLSCipher(rawValue: code))
        }
        if !cipherSuites.isEmpty && policy.minimum == .tlsv13 {
            // etcd's rule: TLS 1.3's suites cannot be chosen.
            throw ConfigurationError("cipher suites cannot be configured when only TLS1.3 is enabled")
        }
        return policy
    }
}
