import CCRC32C

/// CRC-32C (Castagnoli; reflected polynomial `0x82F63B78`), the checksum of every
/// WAL record and snapshot file. With the CPU's CRC-32C instructions where it
/// has them (`CCRC32C`: x86-64 SSE4.2, AArch64 CRC), otherwise table-driven,
/// slicing-by-8.
///
/// Values are finalized checksums, so updating is chainable:
/// `update(checksum(a), b) == checksum(a + b)`.
public enum CRC32C {
    /// Whether this CPU computes CRC-32C itself.
    static let hardware = ensemble_crc32c_hardware() != 0

    /// Eight 256-entry tables, flattened: table `k` starts at `k * 256`.
    private static let table: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xFF)]
            }
        }
        return t
    }()

    /// The checksum of `bytes`.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        update(0, bytes)
    }

    /// Extends the finalized checksum `crc` with `bytes`.
    public static func update(_ crc: UInt32, _ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(crc, $0) }
    }

    /// Extends the finalized checksum `crc` with `bytes[range]`.
    public static func update(_ crc: UInt32, _ bytes: [UInt8], range: Range<Int>) -> UInt32 {
        bytes.withUnsafeBytes { update(crc, UnsafeRawBufferPointer(rebasing: $0[range])) }
    }

    /// Extends the finalized checksum `crc` with the bytes in `buffer`.
    public static func update(_ crc: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        guard hardware, let base = buffer.baseAddress else { return software(crc, buffer) }
        return ensemble_crc32c_update(crc, base, buffer.count)
    }

    /// ``update(_:_:)-(_,UnsafeRawBufferPointer)`` from the tables.
    static func software(_ crc: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        table.withUnsafeBufferPointer { t in
            var c = ~crc
            var i = 0
            let n = buffer.count
            while n - i >= 8 {
                let lo = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: i, as: UInt32.self)) ^ c
                let hi = UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
                c = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                c = t[Int((c ^ UInt32(buffer[i])) & 0xFF)] ^ (c >> 8)
                i += 1
            }
            return ~c
        }
    }
}
