/// The progress line a benchmark redraws on standard error while it runs:
/// ` 3400 / 10000 [=========>                 ]  34.00% 2.1s`. Pure; the
/// caller writes it after a carriage return to update it in place.
public struct ProgressBar: Sendable {
    public let total: Int
    /// Characters between the brackets.
    public let width: Int

    public init(total: Int, width: Int = 40) {
        self.total = max(0, total)
        self.width = max(1, width)
    }

    public func render(done: Int, elapsed: Duration) -> String {
        let done = min(max(0, done), total)
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let filled = Int(fraction * Double(width))
        var bar = String(repeating: "=", count: filled)
        if filled < width {
            bar += done > 0 ? ">" : " "
            bar += String(repeating: " ", count: width - filled - 1)
        }
        let digits = String(total).count
        let count = String(repeating: " ", count: max(0, digits - String(done).count)) + String(done)
        let percent = Self.fixed(fraction * 100, decimals: 2)
        let padded = String(repeating: " ", count: max(0, 6 - percent.count)) + percent
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return "\(count) / \(total) [\(bar)] \(padded)% \(Self.fixed(seconds, decimals: 1))s"
    }

    /// `value` with `decimals` digits after the point, without Foundation.
    static func fixed(_ value: Double, decimals: Int) -> String {
        var scale = 1
        for _ in 0..<decimals { scale *= 10 }
        let scaled = Int((value * Double(scale)).rounded())
        let whole = scaled / scale
        let fraction = String(scaled % scale)
        guard decimals > 0 else { return String(whole) }
        return "\(whole)." + String(repeating: "0", count: decimals - fraction.count) + fraction
    }
}
