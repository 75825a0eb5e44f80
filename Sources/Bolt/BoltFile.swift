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
        let start = BoltFormat.pageHeaderSize
        return bytes.count >= start + 4 && bytes.loadLE(UInt32.self, at: start) == BoltFormat.magic
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
        var names: [[UInt8]] = []
        try walkRoot { name, _ in names.append(Array(name)) }
        return names
    }

    /// Calls `body` with every key and value of bucket `name`, in key order.
    /// False if there is no such bucket.
    @discardableResult
    public func forEach(
        inBucket name: [UInt8], _ body: (ArraySlice<UInt8>, ArraySlice<UInt8>) throws(BoltError) -> Void
    ) throws(BoltError) -> Bool {
        var found: ArraySlice<UInt8>?
        try walkRoot { bucket, value in
            if found == nil, bucket.elementsEqual(name) { found = value }
        }
        guard let value = found else { return false }
        try walkBucket(value, body)
        return true
    }

    /// Every bucket with its entries, in order (what `etcdctl snapshot status` reads).
    public func forEachBucket(
        _ body: (_ name: ArraySlice<UInt8>, _ key: ArraySlice<UInt8>?, _ value: ArraySlice<UInt8>?) throws(BoltError) -> Void
    ) throws(BoltError) {
        var buckets: [(ArraySlice<UInt8>, ArraySlice<UInt8>)] = []
        try walkRoot { buckets.append(($0, $1)) }
        for (name, value) in buckets {
            try body(name, nil, nil)
            try walkBucket(value) { (key, entry) throws(BoltError) in try body(name, key, entry) }
        }
    }

    // MARK: Trees

    func walkRoot(_ body: (ArraySlice<UInt8>, ArraySlice<UInt8>) throws(BoltError) -> Void) throws(BoltError) {
        var visited: Set<UInt64> = []
        let (start, end) = try page(rootPage)
        try walk(start, end, depth: 0, visited: &visited) { (flags, key, value) throws(BoltError) in
            if flags & BoltFormat.bucketElement != 0 { try body(key, value) }
        }
    }

    /// A bucket's entries from its value in the root bucket (a header, and
    /// for an inline bucket its page).
    func walkBucket(_ value: ArraySlice<UInt8>, _ body: (ArraySlice<UInt8>, ArraySlice<UInt8>) throws(BoltError) -> Void) throws(BoltError) {
        guard value.count >= BoltFormat.bucketHeaderSize else {
            throw BoltError("bucket header of \(value.count) bytes at offset \(value.startIndex)")
        }
        let root = bytes.loadLE(UInt64.self, at: value.startIndex)
        var visited: Set<UInt64> = []
        let (start, end) = root == 0 ? (value.startIndex + BoltFormat.bucketHeaderSize, value.endIndex) : try page(root)
        try walk(start, end, depth: 0, visited: &visited) { (flags, key, value) throws(BoltError) in
            if flags & BoltFormat.bucketElement == 0 { try body(key, value) }
        }
    }

    /// The byte range of page `id` with its overflow pages.
    func page(_ id: UInt64) throws(BoltError) -> (Int, Int) {
        guard id >= 2, id < pageCount else { throw BoltError("page \(id): out of bounds (\(pageCount) pages)") }
        let start = Int(id) * pageSize
        guard start + BoltFormat.pageHeaderSize <= bytes.count else { throw BoltError("page \(id): beyond the file") }
        guard bytes.loadLE(UInt64.self, at: start) == id else {
            throw BoltError("page \(id): its header names page \(bytes.loadLE(UInt64.self, at: start))")
        }
        let span = UInt64(bytes.loadLE(UInt32.self, at: start + 12)) + 1
        guard id + span <= pageCount else { throw BoltError("page \(id): overflows past the last page") }
        return (start, start + Int(span) * pageSize)
    }

    /// The elements of the page in `start..<end`, leaves reported in order.
    func walk(
        _ start: Int, _ end: Int, depth: Int, visited: inout Set<UInt64>,
        _ leaf: (UInt32, ArraySlice<UInt8>, ArraySlice<UInt8>) throws(BoltError) -> Void
    ) throws(BoltError) {
        guard depth <= Self.maximumDepth else { throw BoltError("tree deeper than \(Self.maximumDepth) levels at offset \(start)") }
        guard start + BoltFormat.pageHeaderSize <= end else { throw BoltError("page header beyond its page at offset \(start)") }
        let flags = bytes.loadLE(UInt16.self, at: start + 8)
        let count = Int(bytes.loadLE(UInt16.self, at: start + 10))
        guard start + BoltFormat.pageHeaderSize + count * BoltFormat.elementSize <= end else {
            throw BoltError("page at offset \(start): \(count) elements do not fit")
        }
        for j in 0..<count {
            let element = start + BoltFormat.pageHeaderSize + j * BoltFormat.elementSize
            if flags == BoltFormat.leafPage {
                let position = element + Int(bytes.loadLE(UInt32.self, at: element + 4))
                let keyCount = Int(bytes.loadLE(UInt32.self, at: element + 8))
                let valueCount = Int(bytes.loadLE(UInt32.self, at: element + 12))
                guard position + keyCount + valueCount <= end else {
                    throw BoltError("element \(j) of the page at offset \(start) points past it")
                }
                try leaf(
                    bytes.loadLE(UInt32.self, at: element), bytes[position..<(position + keyCount)],
                    bytes[(position + keyCount)..<(position + keyCount + valueCount)])
            } else if flags == BoltFormat.branchPage {
                let child = bytes.loadLE(UInt64.self, at: element + 8)
                guard visited.insert(child).inserted else { throw BoltError("page \(child) is reached twice") }
                let (childStart, childEnd) = try page(child)
                try walk(childStart, childEnd, depth: depth + 1, visited: &visited, leaf)
            } else {
                throw BoltError("page at offset \(start): flags \(flags), neither a branch nor a leaf")
            }
        }
    }
}
