extension Duration {
    /// The duration in seconds, as `Thread.sleep` and `DispatchTime` take it.
    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
