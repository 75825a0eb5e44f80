/// Distinct key ranges, found by a key they contain in O(log n + matches)
/// (etcd's watcher groups keep an interval tree for the same query): every
/// write asks which watched ranges its keys fall in, and a member may have
/// thousands of distinct ranges watched (one prefix per client, say).
///
/// The ranges are kept sorted by start, beside a segment tree holding, for
/// each node, which range below it ends last. A query takes the ranges that
/// start at or before the key — a prefix of the sorted array — and descends
/// only into subtrees whose last end lies past the key. Adding or removing a
/// range shifts the array (a memmove) and marks the tree stale; the next
/// query rebuilds it, in O(n) integer work. So a storm of watch creates
/// (clients re-watching after a failover) costs one rebuild, not one each.
struct KeyRangeIndex {
    private var ranges: [KeyRange] = []
    /// Node 1 is the root; node i has children 2i and 2i+1; leaf j is node
    /// `leaves + j`. Each holds the index of the range below it whose end is
    /// greatest, or -1 for none.
    private var lastEnding: [Int] = []
    private var leaves = 0
    private var stale = false

    var count: Int { ranges.count }

    /// Adds `range`; false if it was already there.
    @discardableResult
    mutating func insert(_ range: KeyRange) -> Bool {
        let at = position(of: range)
        if at < ranges.count && ranges[at] == range { return false }
        ranges.insert(range, at: at)
        stale = true
        return true
    }

    /// Removes `range`; false if it was not there.
    @discardableResult
    mutating func remove(_ range: KeyRange) -> Bool {
        let at = position(of: range)
        guard at < ranges.count && ranges[at] == range else { return false }
        ranges.remove(at: at)
        stale = true
        return true
    }

    /// Calls `body` with every range that contains `key`, in start order.
    mutating func forEach(containing key: [UInt8], _ body: (KeyRange) -> Void) {
        if stale { rebuild() }
        // Ranges that start at or before the key: indexes 0..<limit.
        var low = 0
        var high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ByteKeyTree<Int>.compare(ranges[mid].start, key) <= 0 { low = mid + 1 } else { high = mid }
        }
        guard low > 0 else { return }
        visit(node: 1, covering: 0..<leaves, below: low, key: key, body)
    }

    private func visit(node: Int, covering span: Range<Int>, below limit: Int, key: [UInt8], _ body: (KeyRange) -> Void) {
        guard span.lowerBound < limit, endsPast(lastEnding[node], key) else { return }
        if span.count == 1 {
            body(ranges[span.lowerBound])
            return
        }
        let middle = span.lowerBound + span.count / 2
        visit(node: 2 * node, covering: span.lowerBound..<middle, below: limit, key: key, body)
        visit(node: 2 * node + 1, covering: middle..<span.upperBound, below: limit, key: key, body)
    }

    /// Whether range `index` ends past `key` (so, starting at or before the
    /// key, it contains it); -1 is no range.
    private func endsPast(_ index: Int, _ key: [UInt8]) -> Bool {
        guard index >= 0 else { return false }
        guard let end = ranges[index].end else { return true }
        return ByteKeyTree<Int>.compare(end, key) > 0
    }

    /// Of two range indexes (-1: none), the one whose end is greater.
    private func laterEnding(_ a: Int, _ b: Int) -> Int {
        guard a >= 0 else { return b }
        guard b >= 0 else { return a }
        switch (ranges[a].end, ranges[b].end) {
        case (nil, _): return a
        case (_, nil): return b
        case let (x?, y?): return ByteKeyTree<Int>.compare(x, y) >= 0 ? a : b
        }
    }

    /// Where `range` is, or goes, in start (then end) order.
    private func position(of range: KeyRange) -> Int {
        var low = 0
        var high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if Self.precedes(ranges[mid], range) { low = mid + 1 } else { high = mid }
        }
        return low
    }

    private static func precedes(_ a: KeyRange, _ b: KeyRange) -> Bool {
        let starts = ByteKeyTree<Int>.compare(a.start, b.start)
        if starts != 0 { return starts < 0 }
        switch (a.end, b.end) {
        case let (x?, y?): return ByteKeyTree<Int>.compare(x, y) < 0
        case (_?, nil): return true
        default: return false
        }
    }

    private mutating func rebuild() {
        stale = false
        leaves = 1
        while leaves < ranges.count { leaves *= 2 }
        if lastEnding.count != 2 * leaves { lastEnding = Array(repeating: -1, count: 2 * leaves) }
        for j in 0..<leaves { lastEnding[leaves + j] = j < ranges.count ? j : -1 }
        var node = leaves - 1
        while node >= 1 {
            lastEnding[node] = laterEnding(lastEnding[2 * node], lastEnding[2 * node + 1])
            node -= 1
        }
    }
}
