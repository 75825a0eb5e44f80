/// Durations written as Go's `time.ParseDuration` reads them, which etcd's
/// duration flags use: a sequence of decimal numbers, each with a unit (`ns`,
/// `us`/`µs`, `ms`, `s`, `m`, `h`), such as `300ms`, `1.5h` or `2h45m`; an
/// optional sign; `0` alone needs no unit. Anything else, or a value past
/// about 292 years (Go's limit), is nil.
public enum GoDuration {
    public static func parse(_ text: String) -> Duration? {
        var rest = Substring(text)
        var negative = false
        if let sign = rest.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            rest = rest.dropFirst()
        }
        if rest == "0" { return .zero }
        guard !rest.isEmpty else { return nil }
        var nanoseconds = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, number != ".", let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            let unit = rest.prefix { !($0.isASCII && ($0.isNumber || $0 == ".")) }
            guard let scale = Self.units[String(unit)] else { return nil }
            rest = rest.dropFirst(unit.count)
            nanoseconds += value * scale
        }
        guard nanoseconds < 9.2e18 else { return nil }
        let duration = Duration.nanoseconds(Int64(nanoseconds))
        return negative ? .zero - duration : duration
    }

    private static let units: [String: Double] = [
        "ns": 1, "us": 1e3, "\u{B5}s": 1e3, "\u{3BC}s": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9,
    ]
}
