import Raft
import Testing
@testable import Checksum

@Suite struct CRC32CTests {
    @Test func standardVectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
        // RFC 3720 (iSCSI) appendix B.4 vectors.
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }) == 0x113F_DB5C)
    }

    /// The slicing-by-8 path must agree with a bit-at-a-time reference, and
    /// chaining `update` over any split must equal the one-shot checksum.
    @Test func incrementalEqualsOneShot() {
        var rng = SeededRandom(seed: 42)
        for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099] {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let whole = CRC32C.checksum(data)
            #expect(whole == bitwiseCRC32C(data), "length \(length)")
            for split in Set([0, length / 3, length / 2, max(0, length - 1), length]) {
                let first = CRC32C.checksum(Array(data[..<split]))
                #expect(CRC32C.update(first, Array(data[split...])) == whole, "length \(length) split \(split)")
            }
            // Unaligned ranges inside a larger buffer.
            if length > 3 {
                #expect(CRC32C.update(0, data, range: 3..<length) == bitwiseCRC32C(Array(data[3...])))
            }
        }
    }

    /// The CPU's instructions (when this machine has them) and the tables
    /// agree at every length and alignment.
    @Test func hardwareAgreesWithTheTables() {
        var rng = SeededRandom(seed: 7)
        let data = (0..<5000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        data.withUnsafeBytes { all in
            for start in 0..<9 {
                for length in [0, 1, 3, 7, 8, 9, 31, 64, 100, 4096] where start + length <= all.count {
                    let slice = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                    let seed = UInt32(start * 977 + length)
                    #expect(CRC32C.update(seed, slice) == CRC32C.software(seed, slice), "start \(start) length \(length)")
                }
            }
        }
        print("CRC-32C instructions on this machine: \(CRC32C.hardware)")
    }

    private func bitwiseCRC32C(_ data: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in data {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        }
        return ~c
    }
}

typealias SeededRandom = SplitMix64
