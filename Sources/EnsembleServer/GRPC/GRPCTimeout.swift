/// The `grpc-timeout` request header: a positive integer of at most 8 digits
/// and a unit (H, M, S, m, u, n). Returns nil for a malformed value, which the
/// server ignores as grpc-go does for values it cannot parse.
func parseGRPCTimeout(_ value: Substring) -> Duration? {
    guard let unit = value.last, value.count >= 2, value.count <= 9 else { return nil }
    guard let amount = Int64(value.dropLast()), amount >= 0 else { return nil }
    switch unit {
    case "H": return .seconds(amount * 3600)
    case "M": return .seconds(amount * 60)
    case "S": return .seconds(amount)
    case "m": return .milliseconds(amount)
    case "u": return .microseconds(amount)
    case "n": return .nanoseconds(amount)
    default: return nil
    }
}

