@testable import Bolt
import Testing

/// The bbolt writer and reader against each other, against bbolt's integrity
/// rules (every page reachable exactly once, as `tx.Check` demands), and
/// against damage. The files are also read by the real bbolt in
/// `EtcdBackupTests` (`etcdctl snapshot status|restore`).
@Suite struct BoltFileTests {
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 11
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
    }

    /// Buckets of every shape: empty, inline, one page, many pages with
    /// branch levels, values that overflow into several pages.
    static func buckets(seed: UInt64) -> [([UInt8], [([UInt8], [UInt8])])] {
        var random = Random(state: seed)
        var result: [([UInt8], [([UInt8], [UInt8])])] = []
        for (name, count, maxValue) in [("empty", 0, 0), ("tiny", 3, 20), ("page", 40, 60), ("key", 6_000, 300), ("large", 12, 20_000)] {
            var entries: [[UInt8]: [UInt8]] = [:]
            while entries.count < count {
                entries[random.bytes(1 + random.below(24))] = random.bytes(random.below(maxValue + 1))
            }
            result.append((Array(name.utf8), entries.map { ($0.key, $0.value) }))
        }
        return result
    }

    static func read(_ file: BoltFile) throws -> [[UInt8]: [([UInt8], [UInt8])]] {
        var contents: [[UInt8]: [([UInt8], [UInt8])]] = [:]
        for name in try file.bucketNames() {
            var entries: [([UInt8], [UInt8])] = []
            try file.forEach(inBucket: name) { key, value in entries.append((Array(key), Array(value))) }
            contents[name] = entries
        }
        return contents
    }

    @Test(arguments: [1, 2, 3] as [UInt64]) func whatIsWrittenReadsBack(seed: UInt64) throws {
        let buckets = Self.buckets(seed: seed)
        let writer = BoltWriter(buckets: buckets.map { BoltBucketSource(name: $0.0, entries: $0.1) })
        let bytes = writer.bytes()
        #expect(bytes.count == writer.fileSize && bytes.count % BoltWriter.pageSize == 0)
        let file = try BoltFile(bytes)
        #expect(file.pageCount == writer.pageCount && file.pageSize == 4096)
        #expect(try file.bucketNames() == buckets.map(\.0).sorted { $0.lexicographicallyPrecedes($1) })
        let contents = try Self.read(file)
        for (name, entries) in buckets {
            let expected = entries.sorted { $0.0.lexicographicallyPrecedes($1.0) }
            let read = try #require(contents[name])
            #expect(read.count == expected.count)
            #expect(zip(read, expected).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 })
        }
        #expect(try file.forEach(inBucket: Array("missing".utf8)) { _, _ in } == false)
    }

    /// bbolt's `tx.Check`: pages 0 and 1 (metas), the freelist, and every
    /// page of every bucket's tree, each reached once and none left over;
    /// branch keys are their children's first keys.
    @Test func everyPageIsReachableExactlyOnce() throws {
        let writer = BoltWriter(buckets: Self.buckets(seed: 7).map { BoltBucketSource(name: $0.0, entries: $0.1) })
        let bytes = writer.bytes()
        let file = try BoltFile(bytes)
        var reached: [UInt64: Int] = [0: 1, 1: 1, 2: 1]
        var walk = BoltFile.Walk()
        var depths: Set<Int> = []
        func visit(_ id: UInt64, depth: Int) throws -> [UInt8] {
            let (start, end) = try file.page(id, &walk)
            for page in id..<(id + UInt64((end - start) / 4096)) { reached[page, default: 0] += 1 }
            #expect(bytes.loadLE(UInt64.self, at: start) == id)
            let flags = bytes.loadLE(UInt16.self, at: start + 8)
            let count = Int(bytes.loadLE(UInt16.self, at: start + 10))
            var firstKey: [UInt8] = []
            for j in 0..<count {
                let element = start + 16 + 16 * j
                if flags == BoltFormat.branchPage {
                    let position = element + Int(bytes.loadLE(UInt32.self, at: element))
                    let key = Array(bytes[position..<(position + Int(bytes.loadLE(UInt32.self, at: element + 4)))])
                    let childFirst = try visit(bytes.loadLE(UInt64.self, at: element + 8), depth: depth + 1)
                    #expect(key == childFirst, "a branch key names its child's first key")
                    if j == 0 { firstKey = key }
                } else {
                    #expect(flags == BoltFormat.leafPage)
                    depths.insert(depth)
                    let position = element + Int(bytes.loadLE(UInt32.self, at: element + 4))
                    let key = Array(bytes[position..<(position + Int(bytes.loadLE(UInt32.self, at: element + 8)))])
                    if j == 0 { firstKey = key }
                    let value = position + key.count
                    if bytes.loadLE(UInt32.self, at: element) & BoltFormat.bucketElement != 0,
                        bytes.loadLE(UInt64.self, at: value) != 0
                    {
                        _ = try visit(bytes.loadLE(UInt64.self, at: value), depth: 0)
                    }
                }
            }
            return firstKey
        }
        _ = try visit(file.rootPage, depth: 0)
        #expect(reached.count == Int(file.pageCount), "pages below the high-water mark all reached")
        #expect(reached.values.allSatisfy { $0 == 1 }, "no page reached twice")
        #expect(depths.contains(2), "the large bucket has branch levels: \(depths)")
    }

    /// A damaged page 0 meta falls back to page 1, as bbolt does.
    @Test func theOtherMetaIsUsedWhenOneIsDamaged() throws {
        var bytes = BoltWriter(buckets: [BoltBucketSource(name: Array("b".utf8), entries: [([1], [2])])]).bytes()
        bytes[20] ^= 0xFF
        let file = try BoltFile(bytes)
        #expect(try Self.read(file)[Array("b".utf8)]?.first?.1 == [2])
        bytes[4096 + 20] ^= 0xFF
        #expect(throws: BoltError.self) { try BoltFile(bytes) }
        #expect(throws: BoltError.self) { try BoltFile([]) }
    }

    /// Randomly damaged or truncated files are refused or read, never crash
    /// or loop (the reader checks every offset and page id it follows).
    @Test func damagedFilesNeverCrashTheReader() throws {
        let pristine = BoltWriter(buckets: Self.buckets(seed: 11).prefix(4).map { BoltBucketSource(name: $0.0, entries: $0.1) }).bytes()
        var random = Random(state: 99)
        var refused = 0
        for round in 0..<600 {
            var bytes = pristine
            if round % 10 == 0 {
                bytes.removeLast(random.below(bytes.count))
            } else {
                for _ in 0..<(1 + random.below(8)) {
                    // Mostly the structure (headers, elements, metas), sometimes anywhere.
                    let page = random.below(bytes.count / 4096)
                    let offset = random.below(4) == 0 ? random.below(bytes.count) : page * 4096 + random.below(96)
                    bytes[offset] = UInt8(truncatingIfNeeded: random.next())
                }
            }
            do {
                _ = try Self.read(try BoltFile(bytes))
            } catch {
                refused += 1
            }
        }
        #expect(refused > 0)
    }

    /// A hostile file cannot make the reader report the same bytes twice:
    /// elements that overlap, keys out of order, a page referenced twice.
    @Test func overlapsAndRepeatsAreRefused() throws {
        let entries = (0..<400).map { i in ([UInt8(i / 256), UInt8(i % 256)], [UInt8](repeating: 1, count: 40)) }
        let bucket = BoltBucketSource(name: Array("b".utf8), entries: entries)
        let pristine = BoltWriter(buckets: [bucket]).bytes()
        _ = try Self.read(try BoltFile(pristine))
        // The first leaf (page 3): its second element pointed at the first's key.
        var overlapping = pristine
        let second = 3 * 4096 + 16 + 16
        overlapping.storeLE(overlapping.loadLE(UInt32.self, at: second + 4) - 42, at: second + 4)
        #expect(throws: BoltError.self) { try Self.read(try BoltFile(overlapping)) }
        // Two keys swapped (same lengths): out of order.
        var swapped = pristine
        let first = 3 * 4096 + 16
        let a = first + Int(swapped.loadLE(UInt32.self, at: first + 4))
        let b = second + Int(swapped.loadLE(UInt32.self, at: second + 4))
        swapped.swapAt(a + 1, b + 1)
        #expect(throws: BoltError.self) { try Self.read(try BoltFile(swapped)) }
        // The root's branch names one leaf twice.
        var repeated = pristine
        let file = try BoltFile(pristine)
        var scratch = BoltFile.Walk()
        let bucketRoot = try #require(try Self.bucketRoot(file))
        let (root, _) = try file.page(bucketRoot, &scratch)
        #expect(repeated.loadLE(UInt16.self, at: root + 8) == BoltFormat.branchPage)
        repeated.storeLE(repeated.loadLE(UInt64.self, at: root + 16 + 8), at: root + 16 + 16 + 8)
        #expect(throws: BoltError.self) { try Self.read(try BoltFile(repeated)) }
    }

    /// The root page of the file's one bucket.
    static func bucketRoot(_ file: BoltFile) throws -> UInt64? {
        var walk = BoltFile.Walk()
        guard let value = try file.buckets(&walk).first?.value else { return nil }
        return file.bytes.loadLE(UInt64.self, at: value.startIndex)
    }
}
