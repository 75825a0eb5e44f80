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
        var keys: [[UInt8]] = []
        var values: [Value] = []
        /// Empty for a leaf; otherwise `keys.count + 1` children.
        var children: [Node] = []
        var isLeaf: Bool { children.isEmpty }

        init() {}

        /// A shallow copy: the arrays are shared until either side changes them.
        init(copying node: Node) {
            keys = node.keys
            values = node.values
            children = node.children
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
            let (index, found) = Self.search(node.keys, key)
            if found { return node.values[index] }
            if node.isLeaf { return nil }
            node = node.children[index]
        }
    }

    /// Runs `body` on the value for `key`, inserting `make()` first when absent.
    func update<R>(_ key: [UInt8], orInsert make: () -> Value, _ body: (inout Value) -> R) -> R {
        if let (node, index) = locate(key) {
            return body(&node.values[index])
        }
        var value = make()
        let result = body(&value)
        insert(key, value)
        return result
    }

    /// Runs `body` on the value for `key` if present.
    @discardableResult
    func modify<R>(_ key: [UInt8], _ body: (inout Value) -> R) -> R? {
        guard let (node, index) = locate(key) else { return nil }
        return body(&node.values[index])
    }

    /// The node holding `key` and its index there, the node made unique to
    /// this tree on the way down (for changing its value in place); nil when absent.
    private func locate(_ key: [UInt8]) -> (Node, Int)? {
        var node = uniqueRoot()
        while true {
            let (index, found) = Self.search(node.keys, key)
            if found { return (node, index) }
            if node.isLeaf { return nil }
            node = Self.uniqueChild(node, index)
        }
    }

    /// Inserts a key that is not present (CLRS B-TREE-INSERT, splitting full nodes
    /// on the way down so a single pass suffices).
    private func insert(_ key: [UInt8], _ value: Value) {
        if root.keys.count == 2 * Self.t - 1 {
            let newRoot = Node()
            newRoot.children = [root]
            root = newRoot
            split(newRoot, child: 0)
        }
        var node = uniqueRoot()
        while true {
            var (index, _) = Self.search(node.keys, key)
            if node.isLeaf {
                node.keys.insert(key, at: index)
                node.values.insert(value, at: index)
                count += 1
                return
            }
            if node.children[index].keys.count == 2 * Self.t - 1 {
                split(node, child: index)
                if Self.compare(key, node.keys[index]) > 0 { index += 1 }
            }
            node = Self.uniqueChild(node, index)
        }
    }

    /// Splits `parent`'s full child at `index` (`parent` unique to this tree).
    private func split(_ parent: Node, child index: Int) {
        let full = Self.uniqueChild(parent, index)
        let t = Self.t
        let right = Node()
        right.keys = Array(full.keys[t...])
        right.values = Array(full.values[t...])
        if !full.isLeaf {
            right.children = Array(full.children[t...])
            full.children.removeSubrange(t...)
        }
        let middleKey = full.keys[t - 1]
        let middleValue = full.values[t - 1]
        full.keys.removeSubrange((t - 1)...)
        full.values.removeSubrange((t - 1)...)
        parent.keys.insert(middleKey, at: index)
        parent.values.insert(middleValue, at: index)
        parent.children.insert(right, at: index + 1)
    }

    /// Visits keys in `[lower, upper)` in ascending order (`upper == nil` means no
    /// upper bound) until `body` returns false.
    func scan(from lower: [UInt8], to upper: [UInt8]?, _ body: ([UInt8], Value) -> Bool) {
        _ = scan(root, lower, upper, body)
    }

    private func scan(_ node: Node, _ lower: [UInt8], _ upper: [UInt8]?, _ body: ([UInt8], Value) -> Bool) -> Bool {
        var index = Self.search(node.keys, lower).index
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
        root = Node()
        count = 0
        for (key, value) in kept { insert(key, value) }
    }

    /// Replaces everything with `entries`, which must be sorted by key.
    func replaceAll(_ entries: [([UInt8], Value)]) {
        root = Node()
        count = 0
        for (key, value) in entries { insert(key, value) }
    }

    /// Index of `key` in `keys`, or where it would be inserted.
    private static func search(_ keys: [[UInt8]], _ key: [UInt8]) -> (index: Int, found: Bool) {
        var low = 0
        var high = keys.count
        while low < high {
            let mid = (low + high) / 2
            let c = compare(keys[mid], key)
            if c == 0 { return (mid, true) }
            if c < 0 { low = mid + 1 } else { high = mid }
        }
        return (low, false)
    }

    /// Lexicographic comparison of unsigned bytes: negative, zero or positive.
    /// memcmp: keys under one prefix share their first bytes, which it
    /// compares many at a time.
    static func compare(_ a: [UInt8], _ b: [UInt8]) -> Int {
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                let n = min(pa.count, pb.count)
                if n > 0, let x = pa.baseAddress, let y = pb.baseAddress {
                    let c = memcmp(x, y, n)
                    if c != 0 { return Int(c) }
                }
                return pa.count - pb.count
            }
        }
    }
}
