/// Little-endian writer and bounds-checked reader for the KV snapshot format.
///
/// The writer has three modes, so that one piece of encoding code serves
/// all: collect every byte (`bytes`), only count them (`counting`: the exact
/// size, before a streamed write), or hand them to `sink` in chunks of about
/// `chunk` bytes (a state of hundreds of megabytes is never held whole).
struct SnapshotWriter {
    var bytes: [UInt8] = []
    /// Bytes produced so far, in every mode.
    private(set) var count = 0
    let counting: Bool
    private let chunk: Int
    private let sink: (([UInt8]) -> Bool)?
    /// The sink refused a chunk: nothing more is produced.
    private(set) var stopped = false

    init() {
        counting = false
        chunk = .max
        sink = nil
    }

    /// Counts bytes without keeping them.
    init(counting: Void) {
        self.counting = true
        chunk = .max
        sink = nil
    }

    /// Hands the bytes to `sink` in chunks; `sink` returns false to stop.
    init(chunk: Int, sink: @escaping ([UInt8]) -> Bool) {
        counting = false
        self.chunk = chunk
        self.sink = sink
        bytes.reserveCapacity(chunk + 64)
    }

    mutating func u8(_ v: UInt8) {
        count += 1
        if !counting { bytes.append(v) }
    }
    mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    mutating func u64(_ v: UInt64) {
        count += 8
        if !counting { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        if bytes.count >= chunk { flush() }
    }
    mutating func raw(_ v: [UInt8]) {
        count += v.count
        if !counting { bytes.append(contentsOf: v) }
    }
    mutating func blob(_ v: [UInt8]) {
        u64(UInt64(v.count))
        raw(v)
        if bytes.count >= chunk { flush() }
    }

    /// Counts a blob of `count` bytes (counting mode only).
    mutating func blob(count n: Int) {
        precondition(counting, "only a counting writer skips a blob's bytes")
        self.count += 8 + n
    }

    /// Hands what is buffered to the sink (streaming mode only).
    mutating func flush() {
        guard let sink, !bytes.isEmpty else { return }
        if !stopped, !sink(bytes) { stopped = true }
        bytes.removeAll(keepingCapacity: true)
    }
}

/// Why a snapshot could not be read.
public struct SnapshotDecodeError: Error, Sendable, Hashable, CustomStringConvertible {
    public let reason: String
    public let offset: Int
    public var description: String { "KV snapshot unreadable at byte \(offset): \(reason)" }
}

struct SnapshotReader {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { position == bytes.count }

    mutating func need(_ n: Int, _ what: String) throws(SnapshotDecodeError) {
        if n < 0 || bytes.count - position < n {
            throw SnapshotDecodeError(reason: "truncated \(what)", offset: position)
        }
    }

    mutating func u8(_ what: String) throws(SnapshotDecodeError) -> UInt8 {
        try need(1, what)
        defer { position += 1 }
        return bytes[position]
    }

    mutating func u64(_ what: String) throws(SnapshotDecodeError) -> UInt64 {
        try need(8, what)
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
        position += 8
        return v
    }

    mutating func i64(_ what: String) throws(SnapshotDecodeError) -> Int64 {
        Int64(bitPattern: try u64(what))
    }

    mutating func count(_ what: String, elementSize: Int) throws(SnapshotDecodeError) -> Int {
        let n = try u64(what)
        // A count can never exceed what the remaining bytes could hold.
        guard n <= UInt64(max(0, bytes.count - position) / max(elementSize, 1)) else {
            throw SnapshotDecodeError(reason: "\(what) \(n) exceeds the data", offset: position - 8)
        }
        return Int(n)
    }

    mutating func blob(_ what: String) throws(SnapshotDecodeError) -> [UInt8] {
        let n = try count(what, elementSize: 1)
        defer { position += n }
        return Array(bytes[position..<(position + n)])
    }
}
