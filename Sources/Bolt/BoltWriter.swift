/// One bucket of a file ``BoltWriter`` writes: `count` entries, read by
/// position, whose keys strictly increase (bytewise). `valueCount` must equal
/// `value(i).count`: the layout is planned from the sizes alone, and the
/// values are produced only while the pages are written.
public struct BoltBucketSource {
    public var name: [UInt8]
    public var count: Int
    public var key: (Int) -> [UInt8]
    public var valueCount: (Int) -> Int
    public var value: (Int) -> [UInt8]

    public init(
        name: [UInt8], count: Int, key: @escaping (Int) -> [UInt8], valueCount: @escaping (Int) -> Int,
        value: @escaping (Int) -> [UInt8]
    ) {
        self.name = name
        self.count = count
        self.key = key
        self.valueCount = valueCount
        self.value = value
    }

    /// A bucket of entries held in memory (sorted here).
    public init(name: [UInt8], entries: [([UInt8], [UInt8])]) {
        let sorted = entries.sorted { $0.0.lexicographicallyPrecedes($1.0) }
        self.init(
            name: name, count: sorted.count, key: { sorted[$0].0 }, valueCount: { sorted[$0].1.count },
            value: { sorted[$0].1 })
    }
}

/// Writes a bbolt database holding the given buckets, streamed page by page
/// in file order: bbolt (and so `etcdctl snapshot status|restore` and etcd)
/// opens it, and its integrity check finds every page reachable.
///
/// The layout is planned at init from the entries' sizes (the keys are read,
/// not the values): pages 0 and 1 the metas, 2 an empty freelist, then each
/// bucket's leaves packed in key order followed by its branch levels bottom
/// up, and last the root bucket's tree. Small buckets are stored inline, as
/// bbolt stores them (at most a quarter of a page). Memory: one planned page
/// record per page, and one page of bytes at a time while writing.
public struct BoltWriter {
    public static let pageSize = 4096

    /// A page of a bucket's tree: leaves cover entries, branches pages of the
    /// level below; `first` and `count` index that range.
    struct Page {
        var id: UInt64
        var first: Int
        var count: Int
        var span: Int
        /// The first entry under this page (the branch key that names it).
        var firstEntry: Int
    }

    struct Tree {
        /// levels[0] are the leaves; the last level holds the root alone.
        var levels: [[Page]]
        var root: UInt64 { levels.last?.first?.id ?? 0 }
    }

    enum Layout {
        case inline([UInt8])
        case tree(Tree)
    }

    let buckets: [BoltBucketSource]
    let layouts: [Layout]
    let rootSource: BoltBucketSource
    let rootTree: Tree
    /// Pages in the file (the meta's `pgid`).
    public let pageCount: UInt64

    /// The file's size in bytes.
    public var fileSize: Int { Int(pageCount) * Self.pageSize }

    public init(buckets unsorted: [BoltBucketSource]) {
        let buckets = unsorted.sorted { $0.name.lexicographicallyPrecedes($1.name) }
        var next: UInt64 = 3
        var layouts: [Layout] = []
        var values: [[UInt8]] = []
        for bucket in buckets {
            if let inline = Self.inlinePage(bucket) {
                layouts.append(.inline(inline))
                values.append([UInt8](repeating: 0, count: BoltFormat.bucketHeaderSize) + inline)
            } else {
                let tree = Self.plan(bucket, next: &next)
                layouts.append(.tree(tree))
                var header: [UInt8] = []
                header.appendLE(tree.root)
                header.appendLE(UInt64(0))
                values.append(header)
            }
        }
        let names = buckets.map(\.name)
        let root = BoltBucketSource(
            name: [], count: names.count, key: { names[$0] }, valueCount: { values[$0].count }, value: { values[$0] })
        self.buckets = buckets
        self.layouts = layouts
        self.rootSource = root
        self.rootTree = Self.plan(root, next: &next, alwaysPaged: true)
        self.pageCount = next
    }

    /// Hands the file to `sink` a page (or an overflowing page's run) at a
    /// time, in order; stops when `sink` returns false. Returns whether every
    /// piece was taken.
    public func write(_ sink: ([UInt8]) -> Bool) -> Bool {
        guard sink(meta(page: 0)), sink(meta(page: 1)), sink(freelist()) else { return false }
        for (bucket, layout) in zip(buckets, layouts) {
            guard case let .tree(tree) = layout else { continue }
            guard write(tree, of: bucket, bucketFlag: 0, sink) else { return false }
        }
        return write(rootTree, of: rootSource, bucketFlag: BoltFormat.bucketElement, sink)
    }

    /// The whole file in memory (tests, small states).
    public func bytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(fileSize)
        _ = write { out += $0; return true }
        return out
    }

    // MARK: Planning

    /// bbolt keeps a bucket inline when its one leaf page, header included,
    /// takes at most a quarter of a page.
    static func inlinePage(_ bucket: BoltBucketSource) -> [UInt8]? {
        var size = BoltFormat.pageHeaderSize
        for i in 0..<bucket.count {
            size += BoltFormat.elementSize + bucket.key(i).count + bucket.valueCount(i)
            if size > pageSize / 4 { return nil }
        }
        return leafPage(id: 0, bucket, first: 0, count: bucket.count, span: 0, bucketFlag: 0)
    }

    /// Packs elements into pages greedily: a page takes elements while they
    /// fit, one element alone may overflow into following pages.
    static func pack(count: Int, elementSize: (Int) -> Int) -> [(first: Int, count: Int, span: Int)] {
        var pages: [(first: Int, count: Int, span: Int)] = []
        var first = 0
        var used = BoltFormat.pageHeaderSize
        for i in 0..<count {
            let size = elementSize(i)
            let n = i - first
            if n > 0 && (used + size > pageSize || n == Int(UInt16.max)) {
                pages.append((first, n, (used + pageSize - 1) / pageSize))
                first = i
                used = BoltFormat.pageHeaderSize
            }
            used += size
        }
        if count > first { pages.append((first, count - first, (used + pageSize - 1) / pageSize)) }
        return pages
    }

    static func plan(_ bucket: BoltBucketSource, next: inout UInt64, alwaysPaged: Bool = false) -> Tree {
        var level: [Page] = []
        let leaves = pack(count: bucket.count) { BoltFormat.elementSize + bucket.key($0).count + bucket.valueCount($0) }
        for leaf in leaves {
            level.append(Page(id: next, first: leaf.first, count: leaf.count, span: leaf.span, firstEntry: leaf.first))
            next += UInt64(leaf.span)
        }
        if level.isEmpty && alwaysPaged {
            level.append(Page(id: next, first: 0, count: 0, span: 1, firstEntry: 0))
            next += 1
        }
        var levels = [level]
        while let below = levels.last, below.count > 1 {
            var above: [Page] = []
            for branch in pack(count: below.count, elementSize: { BoltFormat.elementSize + bucket.key(below[$0].firstEntry).count }) {
                above.append(
                    Page(id: next, first: branch.first, count: branch.count, span: branch.span, firstEntry: below[branch.first].firstEntry))
                next += UInt64(branch.span)
            }
            levels.append(above)
        }
        return Tree(levels: levels)
    }

    // MARK: Pages

    func write(_ tree: Tree, of bucket: BoltBucketSource, bucketFlag: UInt32, _ sink: ([UInt8]) -> Bool) -> Bool {
        for (depth, level) in tree.levels.enumerated() {
            for page in level {
                let bytes =
                    depth == 0
                    ? Self.leafPage(id: page.id, bucket, first: page.first, count: page.count, span: page.span, bucketFlag: bucketFlag)
                    : branchPage(page, children: tree.levels[depth - 1], of: bucket)
                guard sink(bytes) else { return false }
            }
        }
        return true
    }

    /// A leaf page of entries `first..<first+count`; `span` 0 leaves it
    /// unpadded (an inline bucket's page).
    static func leafPage(id: UInt64, _ bucket: BoltBucketSource, first: Int, count: Int, span: Int, bucketFlag: UInt32) -> [UInt8] {
        var page = header(id: id, flags: BoltFormat.leafPage, count: count, span: span)
        let elements = page.count
        page += [UInt8](repeating: 0, count: count * BoltFormat.elementSize)
        for j in 0..<count {
            let key = bucket.key(first + j)
            let value = bucket.value(first + j)
            let element = elements + j * BoltFormat.elementSize
            page.storeLE(bucketFlag, at: element)
            page.storeLE(UInt32(page.count - element), at: element + 4)
            page.storeLE(UInt32(key.count), at: element + 8)
            page.storeLE(UInt32(value.count), at: element + 12)
            page += key
            page += value
        }
        return padded(page, span: span)
    }

    func branchPage(_ page: Page, children: [Page], of bucket: BoltBucketSource) -> [UInt8] {
        var bytes = Self.header(id: page.id, flags: BoltFormat.branchPage, count: page.count, span: page.span)
        let elements = bytes.count
        bytes += [UInt8](repeating: 0, count: page.count * BoltFormat.elementSize)
        for j in 0..<page.count {
            let child = children[page.first + j]
            let key = bucket.key(child.firstEntry)
            let element = elements + j * BoltFormat.elementSize
            bytes.storeLE(UInt32(bytes.count - element), at: element)
            bytes.storeLE(UInt32(key.count), at: element + 4)
            bytes.storeLE(child.id, at: element + 8)
            bytes += key
        }
        return Self.padded(bytes, span: page.span)
    }

    static func header(id: UInt64, flags: UInt16, count: Int, span: Int) -> [UInt8] {
        var page: [UInt8] = []
        page.reserveCapacity(max(span, 1) * pageSize)
        page.appendLE(id)
        page.appendLE(flags)
        page.appendLE(UInt16(count))
        page.appendLE(UInt32(max(span - 1, 0)))
        return page
    }

    /// A page grown past its plan (a value longer than its `valueCount`, a
    /// caller's bug) is returned as it is: the file then differs in size from
    /// ``fileSize``, which the caller checks, rather than trapping here.
    static func padded(_ page: [UInt8], span: Int) -> [UInt8] {
        guard span > 0, page.count <= span * pageSize else { return page }
        var page = page
        page += [UInt8](repeating: 0, count: span * pageSize - page.count)
        return page
    }

    func meta(page id: UInt64) -> [UInt8] {
        var page = Self.header(id: id, flags: BoltFormat.metaPage, count: 0, span: 1)
        let start = page.count
        page.appendLE(BoltFormat.magic)
        page.appendLE(BoltFormat.version)
        page.appendLE(UInt32(Self.pageSize))
        page.appendLE(UInt32(0))
        page.appendLE(rootTree.root)
        page.appendLE(UInt64(0))
        page.appendLE(UInt64(2))  // the freelist page
        page.appendLE(pageCount)
        page.appendLE(id)  // txid: as a new bbolt file has them (0 and 1)
        page.appendLE(BoltFormat.checksum(page[start..<(start + BoltFormat.metaChecksummed)]))
        return Self.padded(page, span: 1)
    }

    func freelist() -> [UInt8] {
        Self.padded(Self.header(id: 2, flags: BoltFormat.freelistPage, count: 0, span: 1), span: 1)
    }
}
