/// The keys of etcd's `tools/benchmark` put and txn-put: `--key-size` bytes,
/// starting with the key index as a zigzag varint (Go's `binary.PutVarint`),
/// the rest zero. Index 0 is one zero byte; 64 is `0x80 0x01`.
///
/// One deliberate difference: etcd writes every key into one reused buffer, so
/// a shorter varint keeps the tail of an earlier, longer one, and a run with
/// random keys touches more distinct keys than `--key-space-size`. Here the
/// tail is always zero, so the key space is exactly `--key-space-size` keys.
public enum BenchKeys {
    /// Bytes of the zigzag varint of `index`.
    public static func varintLength(_ index: Int) -> Int {
        var value = UInt64(bitPattern: Int64(index) << 1 ^ Int64(index) >> 63)
        var length = 1
        while value >= 0x80 {
            value >>= 7
            length += 1
        }
        return length
    }

    /// The smallest `--key-size` that holds every index below `keySpaceSize`.
    public static func minimumKeySize(keySpaceSize: Int) -> Int {
        varintLength(max(0, keySpaceSize - 1))
    }

    /// The key for `index`, `size` bytes long. The size must hold the varint
    /// (see ``minimumKeySize(keySpaceSize:)``); a shorter one is cut.
    public static func key(index: Int, size: Int) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: size)
        var value = UInt64(bitPattern: Int64(index) << 1 ^ Int64(index) >> 63)
        var i = 0
        while i < size {
            if value < 0x80 {
                key[i] = UInt8(value)
                break
            }
            key[i] = UInt8(truncatingIfNeeded: value) | 0x80
            value >>= 7
            i += 1
        }
        return key
    }
}

/// Which key index request `i` writes: `i % keySpaceSize` with
/// `--sequential-keys`, otherwise uniformly random in the key space (etcd's
/// `rand.Intn(keySpaceSize)`).
public struct KeyPicker: Sendable {
    public let keySpaceSize: Int
    public let sequential: Bool

    public init(keySpaceSize: Int, sequential: Bool) {
        self.keySpaceSize = max(1, keySpaceSize)
        self.sequential = sequential
    }

    public func index(forRequest i: Int, using generator: inout some RandomNumberGenerator) -> Int {
        sequential ? i % keySpaceSize : Int.random(in: 0..<keySpaceSize, using: &generator)
    }
}
