// The on-disk layout of a bbolt database (go.etcd.io/bbolt, format version 2),
// the file etcd keeps its state in and `etcdctl snapshot save` downloads.
//
// A file is a run of fixed-size pages. Pages 0 and 1 hold the two meta records
// (the reader takes the valid one with the higher transaction id); the meta
// names the freelist page and the root of the root bucket, a B+tree whose leaf
// elements are the buckets by name. A bucket is a B+tree of its own, or, when
// small, "inline": its leaf page is stored in its entry's value. Every integer
// is little-endian (bbolt writes its structs in the machine's order; etcd's
// files come from little-endian machines).
//
//   page header (16 B):   id u64 | flags u16 | count u16 | overflow u32
//   leaf element (16 B):  flags u32 | pos u32 | ksize u32 | vsize u32
//   branch element (16 B): pos u32 | ksize u32 | pgid u64
//   meta (after a header): magic u32 | version u32 | pageSize u32 | flags u32 |
//                          root (pgid u64, sequence u64) | freelist u64 |
//                          pgid u64 | txid u64 | checksum u64
//   bucket value:         root pgid u64 | sequence u64 [| inline page]
//
// An element's `pos` counts from the element itself to its key (the value
// follows the key). A page whose elements do not fit spans `overflow` more
// pages. The meta's checksum is FNV-1a 64 of its first 56 bytes; its `pgid`
// is the page count (the file's used size is `pgid × pageSize`).

enum BoltFormat {
    static let magic: UInt32 = 0xED0C_DAED
    static let version: UInt32 = 2
    static let pageHeaderSize = 16
    static let elementSize = 16
    static let bucketHeaderSize = 16
    static let metaSize = 64
    /// The meta bytes the checksum covers (all but the checksum).
    static let metaChecksummed = 56

    static let branchPage: UInt16 = 0x01
    static let leafPage: UInt16 = 0x02
    static let metaPage: UInt16 = 0x04
    static let freelistPage: UInt16 = 0x10
    /// A leaf element that is a bucket, not a key.
    static let bucketElement: UInt32 = 0x01

    /// bbolt's FNV-1a 64 of a meta record.
    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return h
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { append(contentsOf: $0) }
    }

    mutating func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { raw in
            for i in 0..<raw.count { self[offset + i] = raw[i] }
        }
    }
}

extension Array where Element == UInt8 {
    /// A little-endian integer at `offset`; the caller has checked the bounds.
    func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size { v |= T(truncatingIfNeeded: self[offset + i]) << (8 * i) }
        return v
    }
}
