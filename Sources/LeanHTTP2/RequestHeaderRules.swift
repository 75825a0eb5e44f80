import NIOHPACK

/// What RFC 9113 §8.2–8.3 requires of the header lists a server receives. A
/// list that breaks a rule is malformed: the stream is reset with
/// PROTOCOL_ERROR (§8.1.1), the connection goes on.
enum RequestHeaderRules {
    /// Whether `headers` is a valid request (`trailers`: valid trailers),
    /// and its size as SETTINGS_MAX_HEADER_LIST_SIZE counts it (§6.5.2: each
    /// field's name and value plus 32), in one pass.
    ///
    /// A request has the pseudo-headers `:method`, `:scheme` and `:path`
    /// (non-empty) once each, `:authority` at most once, no other
    /// pseudo-header, all before the regular ones; trailers have none. Both
    /// have lowercase names, no connection-specific header, and `te` only as
    /// "trailers".
    static func inspect(_ headers: HPACKHeaders, trailers: Bool = false) -> (valid: Bool, size: Int) {
        var seen: (method: Bool, scheme: Bool, path: Bool, authority: Bool) = (false, false, false, false)
        var regular = false
        var size = 0
        for (name, value, _) in headers {
            size += name.utf8.count + value.utf8.count + 32
            if name.utf8.first == UInt8(ascii: ":") {
                guard !regular, !trailers else { return (false, size) }
                switch name {
                case ":method": guard !seen.method else { return (false, size) }; seen.method = true
                case ":scheme": guard !seen.scheme else { return (false, size) }; seen.scheme = true
                case ":path": guard !seen.path, !value.isEmpty else { return (false, size) }; seen.path = true
                case ":authority": guard !seen.authority else { return (false, size) }; seen.authority = true
                default: return (false, size)
                }
            } else {
                regular = true
                guard isValidRegular(name, value) else { return (false, size) }
            }
        }
        return (trailers || (seen.method && seen.scheme && seen.path), size)
    }

    private static func isValidRegular(_ name: String, _ value: String) -> Bool {
        guard !name.isEmpty, !name.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else { return false }
        // HTTP/1 connection-specific headers (§8.2.2), found by length first:
        // this runs for every header of every request.
        switch name.utf8.count {
        case 2: return name != "te" || value == "trailers"
        case 7: return name != "upgrade"
        case 10: return name != "connection" && name != "keep-alive"
        case 16: return name != "proxy-connection"
        case 17: return name != "transfer-encoding"
        default: return true
        }
    }
}
