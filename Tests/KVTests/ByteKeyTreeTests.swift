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
}
