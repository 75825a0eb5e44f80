import Raft

/// The replicated state machine used by the simulation: it keeps no data, only a
/// hash chained over every applied entry, so two members agree on their whole
/// history exactly when they agree on the hash at the same index.
public struct SimStateMachine: Sendable, Equatable {
    public private(set) var appliedIndex: UInt64 = 0
    public private(set) var hash: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func apply(_ entry: Entry) {
        precondition(entry.index == appliedIndex + 1 || appliedIndex == 0 && entry.index >= 1,
                     "state machine skipped from \(appliedIndex) to \(entry.index)")
        var h = hash
        h = Self.mix(h, entry.index)
        h = Self.mix(h, entry.term)
        h = Self.mix(h, UInt64(entry.kind.rawValue))
        for byte in entry.data { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        hash = h
        appliedIndex = entry.index
    }

    static func mix(_ h: UInt64, _ value: UInt64) -> UInt64 {
        var x = (h ^ value) &* 0x9E37_79B9_7F4A_7C15
        x ^= x >> 29
        return x
    }

    /// Snapshot payload: applied index and hash, 16 bytes.
    public func snapshotData() -> [UInt8] {
        withUnsafeBytes(of: appliedIndex.littleEndian) { Array($0) }
            + withUnsafeBytes(of: hash.littleEndian) { Array($0) }
    }

    public init?(snapshotData data: [UInt8]) {
        guard data.count == 16 else { return nil }
        appliedIndex = Self.readUInt64(data, at: 0)
        hash = Self.readUInt64(data, at: 8)
    }

    static func readUInt64(_ bytes: [UInt8], at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        return value
    }
}

/// A client write as the simulation encodes it: 8 bytes of unique id.
enum Proposal {
    static func encode(_ id: UInt64) -> [UInt8] { withUnsafeBytes(of: id.littleEndian) { Array($0) } }
    static func decode(_ data: [UInt8]) -> UInt64? {
        data.count == 8 ? SimStateMachine.readUInt64(data, at: 0) : nil
    }
}
