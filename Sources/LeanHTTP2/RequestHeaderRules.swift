import NIOHPACK

/// What RFC 9113 §8.2–8.3 requires of the header lists a server receives. A
/// list that breaks a rule is malformed: the stream is reset with
/// PROTOCOL_ERROR (§8.1.1), the connection goes on.
enum RequestHeaderRules {
    /// Headers that are HTTP/1 connection-specific and may not appear (§8.2.2).
    static let connectionSpecific: Set<String> = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]

    /// A request's headers: the pseudo-headers `:method`, `:scheme` and
    /// `:path` (non-empty) once each, `:authority` at most once, no other
    /// pseudo-header, all before the regular ones; lowercase names; no
    /// connection-specific header; `te` only as "trailers".
    static func isValidRequest(_ headers: HPACKHeaders) -> Bool {
        var seen: (method: Bool, scheme: Bool, path: Bool, authority: Bool) = (false, false, false, false)
        var regular = false
        for (name, value, _) in headers {
            if name.utf8.first == UInt8(ascii: ":") {
                guard !regular else { return false }
                switch name {
                case ":method": guard !seen.method else { return false }; seen.method = true
                case ":scheme": guard !seen.scheme else { return false }; seen.scheme = true
                case ":path": guard !seen.path, !value.isEmpty else { return false }; seen.path = true
                case ":authority": guard !seen.authority else { return false }; seen.authority = true
                default: return false
                }
            } else {
                regular = true
                guard isValidRegular(name, value) else { return false }
            }
        }
        return seen.method && seen.scheme && seen.path
    }

    /// Trailers: no pseudo-header, and the regular headers' rules.
    static func isValidTrailers(_ headers: HPACKHeaders) -> Bool {
        for (name, value, _) in headers {
            guard name.utf8.first != UInt8(ascii: ":"), isValidRegular(name, value) else { return false }
        }
        return true
    }

    private static func isValidRegular(_ name: String, _ value: String) -> Bool {
        guard !name.isEmpty, !name.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else { return false }
        if name == "te" { return value == "trailers" }
        return !connectionSpecific.contains(name)
    }

    /// The size of a header list as SETTINGS_MAX_HEADER_LIST_SIZE counts it
    /// (§6.5.2): each field's name and value plus 32.
    static func listSize(_ headers: HPACKHeaders) -> Int {
        var size = 0
        for (name, value, _) in headers { size += name.utf8.count + value.utf8.count + 32 }
        return size
    }
}
