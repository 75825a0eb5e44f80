#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An ordered map from byte-string keys to values: a B-tree, as etcd keeps its
/// key index in google/btree. Keys compare lexicographically as unsigned bytes,
/// like etcd's.
///
/// Supports lookup, insertion, in-place update and ordered scans. Removal is done
/// in bulk by ``filter(_:)``, which rebuilds the tree (compaction visits every
/// key anyway). Not thread-safe.
///
/// ``frozenCopy()`` is O(1): the copy shares every node, and a mutation of
/// either tree copies the nodes on its path that are shared (uniqueness is
/// checked on the way down) instead of changing them. A frozen copy may
/// therefore be read on another thread while this tree goes on changing — how
/// a snapshot is encoded without stopping the node loop.
final class ByteKeyTree<Value> {
    final class Node {
        private(set) var keys: [[UInt8]] = []
        var values: [Value] = []
        /// Empty for a leaf; otherwise `keys.count + 1` children.
        var children: [Node] = []
        /// A length every key in this node shares its first bytes to, and for
        /// each key the 8 bytes that follow, big-endian, zero-padded: a search
        /// compares these in place and reads a key itself only on a tie, so
        /// finding a key costs one cache miss per node instead of one per probe.
        private(set) var prefixLength = 0
        private(set) var hints: [UInt64] = []
        var isLeaf: Bool { children.isEmpty }

        init() {}

        /// A shallow copy: the arrays are shared until either side changes them.
        init(copying node: Node) {
            keys = node.keys
            values = node.values
            children = node.children
            prefixLength = node.prefixLength
            hints = node.hints
        }

        /// Inserts `key` at `index`, which must keep the keys sorted.
        func insert(_ key: [UInt8], _ value: Value, at index: Int) {
            let shared = keys.isEmpty ? key.count : min(prefixLength, commonPrefix(key, keys[0]))
            keys.insert(key, at: index)
            values.insert(value, at: index)
            if shared == prefixLength && !hints.isEmpty {
                hints.insert(hint(key, from: shared), at: index)
            } else {
                rehint(prefixLength: shared)
            }
        }

        /// Drops the keys and values from `index` on (the upper half and middle
        /// key of a split, which the caller has taken).
        func removeKeys(from index: Int) {
            keys.removeSubrange(index...)
            values.removeSubrange(index...)
            rehint()
        }

        /// Replaces all keys and values (sorted), recomputing the hints.
        func setKeys(_ newKeys: [[UInt8]], _ newValues: [Value]) {
            keys = newKeys
            values = newValues
            rehint()
        }

        /// Recomputes the hints for the longest prefix the keys share (sorted
        /// keys share what their first and last share), or for `prefixLength`.
        private func rehint(prefixLength length: Int? = nil) {
            if let length {
                prefixLength = length
            } else if let first = keys.first, let last = keys.last {
                prefixLength = keys.count == 1 ? first.count : commonPrefix(first, last)
            } else {
                prefixLength = 0
            }
            hints = keys.map { hint($0, from: prefixLength) }
        }

        /// Index of `key` among the keys, or where it would be inserted.
        func search(_ key: [UInt8]) -> (index: Int, found: Bool) {
            guard let first = keys.first else { return (0, false) }
            if prefixLength > 0 {
                let c = ByteKeyTree.compare(key, first, upTo: prefixLength)
                if c != 0 { return (c < 0 ? 0 : keys.count, false) }
            }
            let wanted = hint(key, from: prefixLength)
            return hints.withUnsafeBufferPointer { hints in
                var low = 0
                var high = hints.count
                while low < high {
                    let mid = (low + high) / 2
                    let c: Int
                    if hints[mid] != wanted {
                        c = hints[mid] < wanted ? -1 : 1
                    } else {
                        c = ByteKeyTree.compare(keys[mid], key)
                    }
                    if c == 0 { return (mid, true) }
                    if c < 0 { low = mid + 1 } else { high = mid }
                }
                return (low, false)
            }
        }

        /// Checks the hints against the keys (tests).
        var hintsAreConsistent: Bool {
            guard hints.count == keys.count else { return false }
            for (key, h) in zip(keys, hints) {
                if key.count < prefixLength || commonPrefix(key, keys[0]) < prefixLength { return false }
                if h != hint(key, from: prefixLength) { return false }
            }
            return true
        }
    }

    /// Minimum degree: nodes hold between `t - 1` and `2t - 1` keys.
    private static var t: Int { 32 }
    private var root = Node()
    private(set) var count = 0

    init() {}

    private init(root: Node, count: Int) {
        self.root = root
        self.count = count
    }

    /// A copy that shares all nodes with this tree (see the type's notes).
    /// Neither tree's later changes show in the other.
    func frozenCopy() -> ByteKeyTree {
        ByteKeyTree(root: root, count: count)
    }

    /// The root, copied first if another tree shares it.
    private func uniqueRoot() -> Node {
        if !isKnownUniquelyReferenced(&root) { root = Node(copying: root) }
        return root
    }

    /// `parent`'s child at `index`, copied first if another tree shares it.
    /// `parent` must itself be unique to this tree.
    private static func uniqueChild(_ parent: Node, _ index: Int) -> Node {
        if !isKnownUniquelyReferenced(&parent.children[index]) {
            parent.children[index] = Node(copying: parent.children[index])
        }
        return parent.children[index]
    }

    /// The value for `key`, if present.
    func value(for key: [UInt8]) -> Value? {
        var node = root
        while true {
            let (index, found) = node.search(key)
            if found { return node.values[index] }
            if node.isLeaf { return nil }
            node = node.children[index]
        }
    }

    /// Runs `body` on the value for `key`, inserting `make()` first when absent.
    /// One pass down: full nodes on the way are split (CLRS B-TREE-INSERT), so
    /// a new key goes straight into its leaf.
    func update<R>(_ key: [UInt8], orInsert make: () -> Value, _ body: (inout Value) -> R) -> R {
        if root.keys.count == 2 * Self.t - 1 {
            let newRoot = Node()
            newRoot.children = [root]
            root = newRoot
            split(newRoot, child: 0)
        }
        var node = uniqueRoot()
        while true {
            var (index, found) = node.search(key)
            if found { return body(&node.values[index]) }
            if node.isLeaf {
                var value = make()
                let result = body(&value)
                node.insert(key, value, at: index)
                count += 1
                return result
            }
            if node.children[index].keys.count == 2 * Self.t - 1 {
                split(node, child: index)
                let c = Self.compare(key, node.keys[index])
                if c == 0 { return body(&node.values[index]) }
                if c > 0 { index += 1 }
            }
            node = Self.uniqueChild(node, index)
        }
    }

    /// Runs `body` on the value for `key` if present.
    @discardableResult
    func modify<R>(_ key: [UInt8], _ body: (inout Value) -> R) -> R? {
        var node = uniqueRoot()
        while true {
            let (index, found) = node.search(key)
            if found { return body(&node.values[index]) }
            if node.isLeaf { return nil }
            node = Self.uniqueChild(node, index)
        }
    }

    /// Splits `parent`'s full child at `index` (`parent` unique to this tree).
    private func split(_ parent: Node, child index: Int) {
        let full = Self.uniqueChild(parent, index)
        let t = Self.t
        let right = Node()
        right.setKeys(Array(full.keys[t...]), Array(full.values[t...]))
        if !full.isLeaf {
            right.children = Array(full.children[t...])
            full.children.removeSubrange(t...)
        }
        let middleKey = full.keys[t - 1]
        let middleValue = full.values[t - 1]
        full.removeKeys(from: t - 1)
        parent.insert(middleKey, middleValue, at: index)
        parent.children.insert(right, at: index + 1)
    }

    /// Visits keys in `[lower, upper)` in ascending order (`upper == nil` means no
    /// upper bound) until `body` returns false.
    func scan(from lower: [UInt8], to upper: [UInt8]?, _ body: ([UInt8], Value) -> Bool) {
        _ = scan(root, lower, upper, body)
    }

    private func scan(_ node: Node, _ lower: [UInt8], _ upper: [UInt8]?, _ body: ([UInt8], Value) -> Bool) -> Bool {
        var index = node.search(lower).index
        while true {
            if !node.isLeaf, !scan(node.children[index], lower, upper, body) { return false }
            guard index < node.keys.count else { return true }
            let key = node.keys[index]
            if let upper, Self.compare(key, upper) >= 0 { return false }
            if !body(key, node.values[index]) { return false }
            index += 1
        }
    }

    /// Keeps only the entries for which `keep` returns a value (possibly changed),
    /// rebuilding the tree.
    func filter(_ keep: ([UInt8], Value) -> Value?) {
        var kept: [([UInt8], Value)] = []
        kept.reserveCapacity(count)
        scan(from: [], to: nil) { key, value in
            if let value = keep(key, value) { kept.append((key, value)) }
            return true
        }
        replaceAll(kept)
    }

    /// Replaces everything with `entries`, which must be sorted by key.
    func replaceAll(_ entries: [([UInt8], Value)]) {
        root = Node()
        count = 0
        for (key, value) in entries { update(key, orInsert: { value }) { _ in } }
    }

    /// Whether every node's search hints match its keys (tests).
    var hintsAreConsistent: Bool {
        var pending = [root]
        while let node = pending.popLast() {
            if !node.hintsAreConsistent { return false }
            pending.append(contentsOf: node.children)
        }
        return true
    }

    /// Lexicographic comparison of unsigned bytes: negative, zero or positive.
    /// memcmp: keys under one prefix share their first bytes, which it
    /// compares many at a time.
    static func compare(_ a: [UInt8], _ b: [UInt8]) -> Int {
        compare(a, b, upTo: Int.max)
    }

    /// ``compare(_:_:)`` of the first `limit` bytes of each.
    static func compare(_ a: [UInt8], _ b: [UInt8], upTo limit: Int) -> Int {
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                let ca = min(pa.count, limit)
                let cb = min(pb.count, limit)
                let n = min(ca, cb)
                if n > 0, let x = pa.baseAddress, let y = pb.baseAddress {
                    let c = memcmp(x, y, n)
                    if c != 0 { return Int(c) }
                }
                return ca - cb
            }
        }
    }
}

/// How many first bytes `a` and `b` share.
private func commonPrefix(_ a: [UInt8], _ b: [UInt8]) -> Int {
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            let n = min(pa.count, pb.count)
            var i = 0
            if let x = pa.baseAddress, let y = pb.baseAddress {
                // Eight bytes at a time; the first differing byte is the lowest
                // in little-endian order.
                while i + 8 <= n {
                    let a = UnsafeRawPointer(x + i).loadUnaligned(as: UInt64.self).littleEndian
                    let b = UnsafeRawPointer(y + i).loadUnaligned(as: UInt64.self).littleEndian
                    if a != b { return i + (a ^ b).trailingZeroBitCount / 8 }
                    i += 8
                }
            }
            while i < n, pa[i] == pb[i] { i += 1 }
            return i
        }
    }
}

/// The 8 bytes of `key` from `offset` as a big-endian number, zero-padded, so
/// that hints order as the bytes do (equal hints say nothing).
private func hint(_ key: [UInt8], from offset: Int) -> UInt64 {
    key.withUnsafeBufferPointer { bytes in
        let end = min(bytes.count, offset + 8)
        var value: UInt64 = 0
        var i = offset
        while i < end {
            value = value << 8 | UInt64(bytes[i])
            i += 1
        }
        if end > offset { value <<= UInt64(8 * (offset + 8 - end)) } else { value = 0 }
        return value
    }
}
