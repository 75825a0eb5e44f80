import EnsembleAPI
import SwiftProtobuf
import Raft
import Testing

/// Hostile or damaged input must never crash the decoder: it either throws
/// or yields a message that re-encodes and decodes to itself.
@Suite("Decode fuzz")
struct DecodeFuzzTests {
    @Test("random bytes never crash the decoder")
    func randomBytes() {
        var rng = SplitMix64(seed: 0x00E7_5E4B_1E00_0001)
        var decoded = 0
        for type in GoldenCorpus.fuzzTypes {
            for _ in 0..<1_500 {
                let count = Int.random(in: 0...48, using: &rng)
                let input = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if let stable = try? decodeIsStable(type, input) {
                    decoded += 1
                    #expect(stable, "\(type.protoMessageName): \(hexString(input))")
                }
            }
        }
        // Some random inputs are valid protobuf (e.g. the empty one), so the
        // success path is exercised too.
        #expect(decoded > 0)
    }

    @Test("every truncation of a valid message is handled")
    func truncations() {
        for (type, hex) in GoldenCorpus.cases {
            let full = bytes(hex: hex)
            for length in 0..<full.count {
                let prefix = Array(full[..<length])
                if let stable = try? decodeIsStable(type, prefix) {
                    #expect(stable, "\(type.protoMessageName) prefix \(length)")
                }
            }
        }
    }

    @Test("single-byte corruptions of valid messages are handled")
    func mutations() {
        var rng = SplitMix64(seed: 0x00E7_5E4B_1E00_0002)
        for (type, hex) in GoldenCorpus.cases {
            let original = bytes(hex: hex)
            for index in original.indices {
                for replacement: UInt8 in [0x00, 0xff, 0x80, 0x7f, UInt8.random(in: 0...255, using: &rng)] {
                    var corrupted = original
                    corrupted[index] = replacement
                    if let stable = try? decodeIsStable(type, corrupted) {
                        #expect(stable, "\(type.protoMessageName) byte \(index) -> \(replacement)")
                    }
                }
            }
            // Random messages spliced from pieces of the original.
            for _ in 0..<200 {
                var spliced = original
                let cut = Int.random(in: 0...spliced.count, using: &rng)
                spliced.insert(contentsOf: original.prefix(Int.random(in: 0...original.count, using: &rng)), at: cut)
                if let stable = try? decodeIsStable(type, spliced) {
                    #expect(stable, "\(type.protoMessageName) spliced \(hexString(spliced))")
                }
            }
        }
    }

    /// TxnRequest -> RequestOp -> TxnRequest ... nested `levels` deep.
    static func nestedTxn(levels: Int) -> [UInt8] {
        func varint(_ value: Int) -> [UInt8] {
            var value = UInt64(value)
            var out: [UInt8] = []
            while value >= 0x80 {
                out.append(UInt8(value & 0x7f) | 0x80)
                value >>= 7
            }
            out.append(UInt8(value))
            return out
        }
        var txn: [UInt8] = []
        for _ in 0..<levels {
            let op = [0x22] + varint(txn.count) + txn  // RequestOp.request_txn
            txn = [0x12] + varint(op.count) + op  // TxnRequest.success
        }
        return txn
    }

    @Test("deeply nested transactions hit the depth limit instead of the stack")
    func deepNesting() throws {
        // Shallow nesting decodes.
        let shallow = try Etcdserverpb_TxnRequest(serializedBytes: Self.nestedTxn(levels: 20))
        var depth = 0
        var cursor = shallow
        while let op = cursor.success.first, case .requestTxn(let inner) = op.request {
            depth += 1
            cursor = inner
        }
        #expect(depth == 20)
        // Hostile nesting is refused with an error.
        #expect(throws: (any Error).self) {
            try Etcdserverpb_TxnRequest(serializedBytes: Self.nestedTxn(levels: 3_000))
        }
    }
}
