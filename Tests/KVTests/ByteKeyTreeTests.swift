@testable import KV
import Raft
import Testing

@Suite struct ByteKeyTreeTests {
    @Test func matchesASortedDictionaryUnderRandomInserts() {
        var rng = SeededRandom(seed: 3)
        let tree = ByteKeyTree<Int>()
        var reference: [[UInt8]: Int] = [:]
        for i in 0..<5_000 {
            let key = (0..<Int.random(in: 1...4, using: &rng)).map { _ in UInt8.random(in: 0...5, using: &rng) }
            tree.update(key, orInsert: { 0 }) { $0 = i }
            reference[key] = i
        }
        #expect(tree.count == reference.count)
        var scanned: [([UInt8], Int)] = []
        tree.scan(from: [], to: nil) { key, value in
            scanned.append((key, value))
            return true
        }
        let sorted = reference.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        #expect(scanned.map(\.0) == sorted.map(\.key))
        #expect(scanned.map(\.1) == sorted.map(\.value))
        // Bounded scans.
        let lower: [UInt8] = [2]
        let upper: [UInt8] = [3, 1]
        var bounded: [[UInt8]] = []
        tree.scan(from: lower, to: upper) { key, _ in
            bounded.append(key)
            return true
        }
        #expect(bounded == sorted.map(\.key).filter { !$0.lexicographicallyPrecedes(lower) && $0.lexicographicallyPrecedes(upper) })
        for (key, value) in reference { #expect(tree.value(for: key) == value) }
        // Bulk removal keeps order.
        tree.filter { _, value in value % 2 == 0 ? value : nil }
        #expect(tree.count == reference.values.filter { $0 % 2 == 0 }.count)
    }

    /// Keys that share long prefixes (etcdctl check perf's: a 20-byte prefix,
    /// a random varint, zeros to 276 bytes), keys that are prefixes of other
    /// keys and keys that differ only past the search hints' 8 bytes: lookups,
    /// scans and the per-node hints agree with a sorted reference throughout.
    @Test func longSharedPrefixesAndPrefixKeys() {
        var rng = SeededRandom(seed: 29)
        let tree = ByteKeyTree<Int>()
        var reference: [[UInt8]: Int] = [:]
        let base = Array("/etcdctl-check-perf/".utf8)
        for i in 0..<20_000 {
            var key = base
            switch i % 4 {
            case 0:
                var n = UInt64.random(in: 0...UInt64.max, using: &rng)
                for _ in 0..<9 { key.append(UInt8(truncatingIfNeeded: n)); n >>= 7 }
                key += [UInt8](repeating: 0, count: 247)
            case 1:
                key += (0..<Int.random(in: 0...3, using: &rng)).map { _ in UInt8.random(in: 0...2, using: &rng) }
            case 2:
                key += [UInt8](repeating: 7, count: Int.random(in: 0...12, using: &rng))
                key += (0..<2).map { _ in UInt8.random(in: 0...255, using: &rng) }
            default:
                key = (0..<Int.random(in: 0...2, using: &rng)).map { _ in UInt8.random(in: 0...1, using: &rng) }
            }
            tree.update(key, orInsert: { -1 }) { $0 = i }
            reference[key] = i
            if i % 2_500 == 0 { #expect(tree.hintsAreConsistent) }
        }
        #expect(tree.hintsAreConsistent)
        #expect(tree.count == reference.count)
        for (key, value) in reference { #expect(tree.value(for: key) == value) }
        #expect(tree.value(for: base + [9, 9]) == nil)
        var scanned: [[UInt8]] = []
        tree.scan(from: base, to: base + [255]) { key, _ in
            scanned.append(key)
            return true
        }
        let sorted = reference.keys.sorted { $0.lexicographicallyPrecedes($1) }
        #expect(scanned == sorted.filter { !$0.lexicographicallyPrecedes(base) && $0.lexicographicallyPrecedes(base + [255]) })
        tree.filter { _, value in value % 3 == 0 ? value : nil }
        #expect(tree.hintsAreConsistent)
        for (key, value) in reference { #expect(tree.value(for: key) == (value % 3 == 0 ? value : nil)) }
    }

    /// Keys equal in their hints (so every probe falls back to comparing the
    /// keys), and an update of the very key a split promotes into the parent:
    /// found there, not inserted again; a frozen copy taken before sees none of it.
    @Test func tiedHintsAndTheKeyASplitPromotes() {
        let base = Array("/prefix/".utf8) + [UInt8](repeating: 7, count: 9)
        func k(_ i: Int) -> [UInt8] { base + [UInt8(i)] }
        for freezeFirst in [false, true] {
            let tree = ByteKeyTree<Int>()
            for i in 0..<95 { tree.update(k(i), orInsert: { i }) { _ in } }
            let frozen = freezeFirst ? tree.frozenCopy() : nil
            // The root is full of leaves by now: this update splits on the way
            // down and k(63) is the middle key moved up.
            tree.update(k(63), orInsert: { Issue.record("re-inserted"); return -1 }) { $0 = 1000 }
            #expect(tree.count == 95 && tree.value(for: k(63)) == 1000)
            #expect(tree.hintsAreConsistent)
            var keys: [[UInt8]] = []
            tree.scan(from: [], to: nil) { key, _ in
                keys.append(key)
                return true
            }
            #expect(keys == (0..<95).map(k))
            if let frozen { #expect(frozen.value(for: k(63)) == 63 && frozen.count == 95) }
        }
    }

    func contents(_ tree: ByteKeyTree<[Int]>) -> [([UInt8], [Int])] {
        var out: [([UInt8], [Int])] = []
        tree.scan(from: [], to: nil) { key, value in
            out.append((key, value))
            return true
        }
        return out
    }

    /// A frozen copy keeps the state it was taken at while the live tree goes
    /// on changing in every way (updates in place, inserts that split nodes up
    /// to the root, bulk filtering), and vice versa.
    @Test func frozenCopiesNeverSeeLaterChanges() {
        var rng = SeededRandom(seed: 11)
        let tree = ByteKeyTree<[Int]>()
        var frozen: [(ByteKeyTree<[Int]>, [([UInt8], [Int])])] = []
        for round in 0..<40 {
            for i in 0..<400 {
                let key = (0..<Int.random(in: 1...3, using: &rng)).map { _ in UInt8.random(in: 0...15, using: &rng) }
                tree.update(key, orInsert: { [] }) { $0.append(round * 1000 + i) }
                if i % 7 == 0 { tree.modify(key) { $0.removeFirst(min(1, $0.count)) } }
            }
            if round % 9 == 8 { tree.filter { _, value in value.count % 3 == 0 ? nil : value } }
            let copy = tree.frozenCopy()
            frozen.append((copy, contents(tree)))
            #expect(copy.count == tree.count)
        }
        for (copy, expected) in frozen {
            let got = contents(copy)
            #expect(got.map(\.0) == expected.map(\.0))
            #expect(got.map(\.1) == expected.map(\.1))
        }
    }

    /// The snapshot use: a frozen copy is read on another thread while the
    /// live tree is changed on this one.
    @Test func aFrozenCopyIsReadableWhileTheTreeChanges() async {
        let tree = ByteKeyTree<[Int]>()
        for i in 0..<20_000 { tree.update(Array("k\(i % 5000)".utf8), orInsert: { [] }) { $0.append(i) } }
        let expected = contents(tree)
        let copy = UncheckedBox(tree.frozenCopy())
        let reader = Task.detached { () -> [([UInt8], [Int])] in
            var out: [([UInt8], [Int])] = []
            copy.value.scan(from: [], to: nil) { key, value in
                out.append((key, value))
                return true
            }
            return out
        }
        for i in 0..<20_000 { tree.update(Array("k\(i % 7000)".utf8), orInsert: { [] }) { $0.append(-i) } }
        let read = await reader.value
        #expect(read.map(\.0) == expected.map(\.0))
        #expect(read.map(\.1) == expected.map(\.1))
    }
}

/// Hands a non-Sendable value to another task in a test that owns the proof.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
