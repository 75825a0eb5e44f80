/// Distinct key ranges, found by a key they contain in O(log n + matches)
/// (etcd's watcher groups keep an interval tree for the same query): every
/// write asks which watched ranges its keys fall in, and a member may have
/// thousands of distinct ranges watched (one prefix per client, say).
///
/// The ranges are kept sorted by start, beside a segment tree holding the
/// greatest end under each node. A query takes the ranges that start at or
/// before the key — a prefix of the sorted array — and descends only into
/// subtrees whose greatest end lies past the key. Adding or removing a range
/// shifts the array and rebuilds the tree: O(n) plain work, for watch
/// creates and cancels, which are rare beside writes.
struct KeyRangeIndex {
    /// A range's end as the tree orders it: nil (no upper bound) above all.
    private typealias End = [UInt8]?

    private var ranges: [KeyRange] = []
    /// Node 1 is the root; node i has children 2i and 2i+1; leaf j is node
    /// `leaves + j`. Each holds the greatest end below it (empty: none).
    private var maxEnd: [End] = []
    private var leaves = 0

    var count: Int { ranges.count }

    /// Adds `range`; false if it was already there.
    @discardableResult
    mutating func insert(_ range: KeyRange) -> Bool {
        let at = position(of: range)
        if at < ranges.count && ranges[at] == range { return false }
        ranges.insert(range, at: at)
        rebuild()
        return true
    }

    /// Removes `range`; false if it was not there.
    @discardableResult
    mutating func remove(_ range: KeyRange) -> Bool {
        let at = position(of: range)
        guard at < ranges.count && ranges[at] == range else { return false }
        ranges.remove(at: at)
        rebuild()
        return true
    }

    /// Calls `body` with every range that contains `key`, in start order.
    func forEach(containing key: [UInt8], _ body: (KeyRange) -> Void) {
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
        guard span.lowerBound < limit, Self.isPast(maxEnd[node], key) else { return }
        if span.count == 1 {
            body(ranges[span.lowerBound])
            return
        }
        let middle = span.lowerBound + span.count / 2
        visit(node: 2 * node, covering: span.lowerBound..<middle, below: limit, key: key, body)
        visit(node: 2 * node + 1, covering: middle..<span.upperBound, below: limit, key: key, body)
    }

    /// Whether `end` lies past `key` (so a range starting at or before the
    /// key and ending there contains it). An empty end is no range at all.
    private static func isPast(_ end: End, _ key: [UInt8]) -> Bool {
        guard let end else { return true }
        return !end.isEmpty && ByteKeyTree<Int>.compare(end, key) > 0
    }

    private static func greater(_ a: End, _ b: End) -> End {
        guard let a, let b else { return nil }
        return ByteKeyTree<Int>.compare(a, b) >= 0 ? a : b
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
        leaves = 1
        while leaves < ranges.count { leaves *= 2 }
        maxEnd = Array(repeating: [], count: 2 * leaves)
        for (j, range) in ranges.enumerated() { maxEnd[leaves + j] = range.end }
        var node = leaves - 1
        while node >= 1 {
            maxEnd[node] = Self.greater(maxEnd[2 * node], maxEnd[2 * node + 1])
            node -= 1
        }
    }
}
