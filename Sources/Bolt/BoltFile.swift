/// Why a bbolt file could not be read. The message names the page or offset.
public struct BoltError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A bbolt database held in memory, read-only: its buckets and their entries,
/// in key order. Everything the file says is checked before it is used (page
/// ids within the file, element offsets within their page, trees without
/// cycles), so a damaged or hostile file throws ``BoltError`` rather than
/// crashing or looping.
///
/// Nested buckets (etcd has none) are skipped.
public struct BoltFile: Sendable {
    public let bytes: [UInt8]
    public let pageSize: Int
    /// Pages in use (the meta's `pgid`): bbolt's `Tx.Size()` is `pageCount × pageSize`.
    public let pageCount: UInt64
    let rootPage: UInt64

    /// Pages deeper than this are taken for a cycle or damage.
    static let maximumDepth = 64

    public init(_ bytes: [UInt8]) throws(BoltError) {
        self.bytes = bytes
        // bbolt's order: the meta on page 0 names the page size; page 1 is
        // looked for there (or at common sizes when page 0 is damaged).
        let first = Self.meta(in: bytes, at: 0)
        var candidates: [Meta] = first.map { [$0] } ?? []
        for size in [first?.pageSize ?? 4096, 4096, 8192, 16384, 65536] {
            if let second = Self.meta(in: bytes, at: size), second.pageSize == size {
                candidates.append(second)
                break
            }
        }
        guard let meta = candidates.max(by: { $0.txid < $1.txid }) else {
            throw BoltError("not a bbolt database: no valid meta page")
        }
        let (pages, overflow) = meta.pageCount.multipliedReportingOverflow(by: UInt64(meta.pageSize))
        guard !overflow, pages <= UInt64(bytes.count) else {
            throw BoltError("file truncated: \(bytes.count) bytes, the meta counts \(meta.pageCount) pages of \(meta.pageSize)")
        }
        pageSize = meta.pageSize
        pageCount = meta.pageCount
        rootPage = meta.root
    }

    /// Whether `bytes` start as a bbolt file does (a meta page's magic),
    /// valid or not.
    public static func isBolt(_ bytes: [UInt8]) -> Bool {
        // Page 0's magic, or page 1's at the usual page size (page 0 damaged).
        [0, 4096].contains { offset in
            let start = offset + BoltFormat.pageHeaderSize
            return bytes.count >= start + 4 && bytes.loadLE(UInt32.self, at: start) == BoltFormat.magic
        }
    }

    struct Meta {
        var pageSize: Int
        var root: UInt64
        var pageCount: UInt64
        var txid: UInt64
    }

    static func meta(in bytes: [UInt8], at offset: Int) -> Meta? {
        let start = offset + BoltFormat.pageHeaderSize
        guard offset >= 0, start + BoltFormat.metaSize <= bytes.count else { return nil }
        guard bytes.loadLE(UInt32.self, at: start) == BoltFormat.magic,
            bytes.loadLE(UInt32.self, at: start + 4) == BoltFormat.version,
            bytes.loadLE(UInt64.self, at: start + 56)
                == BoltFormat.checksum(bytes[start..<(start + BoltFormat.metaChecksummed)])
        else { return nil }
        let size = Int(bytes.loadLE(UInt32.self, at: start + 8))
        guard size >= 512, size <= 1 << 20, size & (size - 1) == 0 else { return nil }
        return Meta(
            pageSize: size, root: bytes.loadLE(UInt64.self, at: start + 16),
            pageCount: bytes.loadLE(UInt64.self, at: start + 40), txid: bytes.loadLE(UInt64.self, at: start + 48))
    }

    /// The buckets' names, in order.
    public func bucketNames() throws(BoltError) -> [[UInt8]] {
        var walk = Walk()
        return try buckets(&walk).map { Array($0.name) }
    }

    /// Calls `body` with every key and value of bucket `name`, in key order.
    /// False if there is no such bucket.
    @discardableResult
    public func forEach(
        inBucket name: [UInt8], _ body: (ArraySlice<UInt8>, ArraySlice<UInt8>) throws(BoltError) -> Void
    ) throws(BoltError) -> Bool {
        var walk = Walk()
        guard let bucket = try buckets(&walk).first(where: { $0.name.elementsEqual(name) }) else { return false }
        try walkBucket(bucket.value, &walk, body)
        return true
    }

    /// Every bucket with its entries, in order (what `etcdctl snapshot status`
    /// reads): `body(name, nil, nil)` opens each bucket.
    public func forEachBucket(
        _ body: (_ name: ArraySlice<UInt8>, _ key: ArraySlice<UInt8>?, _ value: ArraySlice<UInt8>?) throws(BoltError) -> Void
    ) throws(BoltError) {
        var walk = Walk()
        for (name, value) in try buckets(&walk) {
            try body(name, nil, nil)
            try walkBucket(value, &walk) { (key, entry) throws(BoltError) in try body(name, key, entry) }
        }
    }

    // MARK: Trees

    /// What a walk has seen: every page it reached (with its overflow), for
    /// bbolt's rule that no page is referenced twice, which also bounds a
    /// walk of a hostile file by the file's size.
    struct Walk {
        var visited: Set<UInt64> = []
    }

    /// The root bucket's entries that are buckets: names strictly
    /// increasing, so no bucket (and no tree under it) is listed twice.
    func buckets(_ walk: inout Walk) throws(BoltError) -> [(name: ArraySlice<UInt8>, value: ArraySlice<UInt8>)] {
        var buckets: [(name: ArraySlice<UInt8>, value: ArraySlice<UInt8>)] = []
        let (start, end) = try page(rootPage, &walk)
        var last: ArraySlice<UInt8>?
        try self.walk(start, end, depth: 0, &walk, last: &last) { (flags, key, value) throws(BoltError) in
            if flags & BoltFormat.bucketElement != 0 { buckets.append((key, value)) }
        }
        return buckets
    }

    /// A bucket's entries from its value in the root bucket (a header, and
    /// for an inline bucket its page).
    func walkBucket(
        _ value: ArraySlice<UInt8>, _ walk: inout Walk, _ body: (ArraySlice<UInt8>, ArraySlice<UInt8>) throws(BoltError) -> Void
    ) throws(BoltError) {
        guard value.count >= BoltFormat.bucketHeaderSize else {
            throw BoltError("bucket header of \(value.count) bytes at offset \(value.startIndex)")
        }
        let root = bytes.loadLE(UInt64.self, at: value.startIndex)
        let (start, end) = root == 0 ? (value.startIndex + BoltFormat.bucketHeaderSize, value.endIndex) : try page(root, &walk)
        var last: ArraySlice<UInt8>?
        try self.walk(start, end, depth: 0, &walk, last: &last) { (flags, key, value) throws(BoltError) in
            if flags & BoltFormat.bucketElement == 0 { try body(key, value) }
        }
    }

    /// The byte range of page `id` with its overflow pages, marked visited:
    /// a page reached twice is refused.
    func page(_ id: UInt64, _ walk: inout Walk) throws(BoltError) -> (Int, Int) {
        guard id >= 2, id < pageCount else { throw BoltError("page \(id): out of bounds (\(pageCount) pages)") }
        let start = Int(id) * pageSize
        guard start + BoltFormat.pageHeaderSize <= bytes.count else { throw BoltError("page \(id): beyond the file") }
        guard bytes.loadLE(UInt64.self, at: start) == id else {
            throw BoltError("page \(id): its header names page \(bytes.loadLE(UInt64.self, at: start))")
        }
        let span = UInt64(bytes.loadLE(UInt32.self, at: start + 12)) + 1
        guard id + span <= pageCount else { throw BoltError("page \(id): overflows past the last page") }
        for covered in id..<(id + span) {
            guard walk.visited.insert(covered).inserted else { throw BoltError("page \(covered): multiple references") }
        }
        return (start, start + Int(span) * pageSize)
    }

    /// The elements of the page in `start..<end`, leaves reported in order.
    /// A leaf's keys and values lie after its elements, one after another
    /// without overlap, and keys strictly increase across the whole tree
    /// (`last`): each byte of the file is reported at most once.
    func walk(
        _ start: Int, _ end: Int, depth: Int, _ walk: inout Walk, last: inout ArraySlice<UInt8>?,
        _ leaf: (UInt32, ArraySlice<UInt8>, ArraySlice<UInt8>) throws(BoltError) -> Void
    ) throws(BoltError) {
        guard depth <= Self.maximumDepth else { throw BoltError("tree deeper than \(Self.maximumDepth) levels at offset \(start)") }
        guard start + BoltFormat.pageHeaderSize <= end else { throw BoltError("page header beyond its page at offset \(start)") }
        let flags = bytes.loadLE(UInt16.self, at: start + 8)
        let count = Int(bytes.loadLE(UInt16.self, at: start + 10))
        var free = start + BoltFormat.pageHeaderSize + count * BoltFormat.elementSize
        guard free <= end else { throw BoltError("page at offset \(start): \(count) elements do not fit") }
        for j in 0..<count {
            let element = start + BoltFormat.pageHeaderSize + j * BoltFormat.elementSize
            if flags == BoltFormat.leafPage {
                let position = element + Int(bytes.loadLE(UInt32.self, at: element + 4))
                let keyCount = Int(bytes.loadLE(UInt32.self, at: element + 8))
                let valueCount = Int(bytes.loadLE(UInt32.self, at: element + 12))
                guard position >= free, position + keyCount + valueCount <= end else {
                    throw BoltError("element \(j) of the page at offset \(start) points outside its data")
                }
                free = position + keyCount + valueCount
                let key = bytes[position..<(position + keyCount)]
                if let previous = last, !previous.lexicographicallyPrecedes(key) {
                    throw BoltError("element \(j) of the page at offset \(start): keys out of order")
                }
                last = key
                try leaf(bytes.loadLE(UInt32.self, at: element), key, bytes[(position + keyCount)..<free])
            } else if flags == BoltFormat.branchPage {
                let (childStart, childEnd) = try page(bytes.loadLE(UInt64.self, at: element + 8), &walk)
                try self.walk(childStart, childEnd, depth: depth + 1, &walk, last: &last, leaf)
            } else {
                throw BoltError("page at offset \(start): flags \(flags), neither a branch nor a leaf")
            }
        }
    }
}
