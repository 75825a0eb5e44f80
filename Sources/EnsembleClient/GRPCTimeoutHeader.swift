/// The `grpc-timeout` request header for a timeout: at most 8 digits and the
/// finest unit (n, u, m, S, M, H) they fit in, rounded up so the server never
/// gives up before the client does (grpc-go encodes it the same way). A
/// timeout that has already passed is `0n`.
func grpcTimeoutHeader(_ timeout: Duration) -> String {
    let (seconds, attoseconds) = timeout.components
    guard seconds > 0 || (seconds == 0 && attoseconds > 0) else { return "0n" }
    let maxValue: Int64 = 99_999_999
    // Nanoseconds, rounded up; saturated far above what 8 digits of hours hold.
    let nanoseconds: Int64
    let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    if overflow {
        nanoseconds = .max
    } else {
        let fraction = attoseconds / 1_000_000_000 + (attoseconds % 1_000_000_000 > 0 ? 1 : 0)
        let (sum, sumOverflow) = product.addingReportingOverflow(fraction)
        nanoseconds = sumOverflow ? .max : sum
    }
    let units: [(Int64, Character)] = [
        (1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"), (60_000_000_000, "M"),
        (3_600_000_000_000, "H"),
    ]
    for (size, unit) in units {
        let value = nanoseconds / size + (nanoseconds % size > 0 ? 1 : 0)
        if value <= maxValue { return "\(value)\(unit)" }
    }
    return "\(maxValue)H"
}
