/// A key or key range as etcd encodes it in (`key`, `range_end`).
struct KeyRange: Sendable, Hashable {
    let start: [UInt8]
    /// Exclusive end; nil for "no upper bound". Equal to the successor of
    /// `start` for a single key.
    let end: [UInt8]?
    let isSingleKey: Bool

    init(key: [UInt8], rangeEnd: [UInt8]) {
        start = key
        if rangeEnd.isEmpty {
            end = key + [0]
            isSingleKey = true
        } else if rangeEnd == [0] {
            end = nil
            isSingleKey = false
        } else {
            end = rangeEnd
            isSingleKey = false
        }
    }

    /// Whether `key` falls in the range.
    func contains(_ key: [UInt8]) -> Bool {
        if ByteKeyTree<Int>.compare(key, start) < 0 { return false }
        guard let end else { return true }
        return ByteKeyTree<Int>.compare(key, end) < 0
    }

    /// Whether the two ranges share a key.
    func overlaps(_ other: KeyRange) -> Bool {
        func before(_ end: [UInt8]?, _ start: [UInt8]) -> Bool {
            guard let end else { return false }
            return ByteKeyTree<Int>.compare(end, start) <= 0
        }
        return !before(end, other.start) && !before(other.end, start)
    }
}
