@testable import KV
import Raft
import Testing

/// The watch hub's range lookup against a plain scan, under random inserts,
/// removals and queries over a small alphabet (so ranges nest, touch and
/// repeat), with single keys, prefixes, from-key ranges and arbitrary ones.
@Suite struct KeyRangeIndexTests {
    static func randomKey(_ rng: inout SeededRandom) -> [UInt8] {
        (0..<Int.random(in: 0...3, using: &rng)).map { _ in UInt8.random(in: 0...4, using: &rng) }
    }

    static func randomRange(_ rng: inout SeededRandom) -> KeyRange {
        var start = randomKey(&rng)
        if start.isEmpty { start = [0] }
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: return KeyRange(key: start, rangeEnd: [])  // one key
        case 1: return KeyRange(key: start, rangeEnd: [0])  // from the key on
        case 2: return KeyRange(key: start, rangeEnd: start.dropLast() + [(start.last ?? 0) + 1])  // a prefix
        default: return KeyRange(key: start, rangeEnd: randomKey(&rng) + [1])
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func findsExactlyTheRangesAScanFinds(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        var index = KeyRangeIndex()
        var reference: Set<KeyRange> = []
        for round in 0..<3_000 {
            // Now and then a burst of changes with no query between (a storm
            // of watch creates): the index catches up at the next query.
            if round % 100 == 99 {
                for _ in 0..<30 {
                    let range = Self.randomRange(&rng)
                    if let end = range.end, ByteKeyTree<Int>.compare(end, range.start) <= 0 { continue }
                    index.insert(range)
                    reference.insert(range)
                }
                if let victim = reference.first {
                    reference.remove(victim)
                    index.remove(victim)
                }
            }
            let range = Self.randomRange(&rng)
            // Inverted or empty ranges never reach the index (the hub refuses them).
            if let end = range.end, ByteKeyTree<Int>.compare(end, range.start) <= 0 { continue }
            if Bool.random(using: &rng) || reference.count < 5 {
                let added = index.insert(range)
                #expect(added == reference.insert(range).inserted)
            } else if let victim = reference.randomElement(using: &rng) {
                reference.remove(victim)
                let removed = index.remove(victim)
                let again = index.remove(victim)
                #expect(removed && !again)
            }
            #expect(index.count == reference.count)
            for _ in 0..<4 {
                let key = Self.randomKey(&rng)
                var found: [KeyRange] = []
                index.forEach(containing: key) { found.append($0) }
                #expect(Set(found) == reference.filter { $0.contains(key) })
                #expect(found.count == Set(found).count)
            }
        }
    }

    @Test func anEmptyIndexFindsNothing() {
        var index = KeyRangeIndex()
        var calls = 0
        index.forEach(containing: [1]) { _ in calls += 1 }
        index.insert(KeyRange(key: [5], rangeEnd: [6]))
        index.forEach(containing: [4]) { _ in calls += 1 }
        index.forEach(containing: [6]) { _ in calls += 1 }
        #expect(calls == 0)
        index.forEach(containing: [5, 9]) { _ in calls += 1 }
        #expect(calls == 1)
    }
}
