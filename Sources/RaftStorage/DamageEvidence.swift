import Checksum
/// What the bytes after a damaged record in the last segment say about it.
enum DamageEvidence: Equatable {
    /// No intact record was written after the damaged bytes had been synced:
    /// the damage is explained by a crash during an unsynced write.
    case none
    /// The intact record at `offset` was written when the segment was already
    /// durable through `syncedThrough`, past the damage: the damaged record had
    /// been synced, so a crash cannot explain it.
    case writtenAfterSync(offset: Int, syncedThrough: Int)
    /// More checksum work than the cap allowed: too many frames after the damage
    /// look like records (crafted data), so corruption cannot be ruled out.
    case undecided(candidates: Int)
}

extension SegmentReader {
    /// Looks after the damage at `damage` for a record that proves it corrupt: a
    /// frame at some position `p` whose checksum matches, whose stored offset is
    /// `p` and whose stored `syncedThrough` is past `damage`.
    ///
    /// One linear pass. Each position costs a byte compare (the stored offset's
    /// low byte must equal the position's); only frames whose offset, synced
    /// range, length and type all fit are checksummed, and that work is capped at
    /// `crcBudget` bytes (default: twice the bytes after the damage plus 1 MiB,
    /// which real records never exceed since each is checksummed at most once).
    /// Frames inside entry data name the offset they were framed for, not the
    /// one they sit at, so they are skipped.
    static func evidence(after damage: Int, in bytes: [UInt8], crcBudget: Int? = nil) -> DamageEvidence {
        let count = bytes.count
        let minimumFrame = WALRecord.frameOverhead + WALRecord.minimumLength
        var budget = crcBudget ?? 2 * max(0, count - damage) + (1 << 20)
        var candidates = 0
        return bytes.withUnsafeBytes { raw -> DamageEvidence in
            var p = damage + 1
            while p + minimumFrame <= count {
                defer { p += 1 }
                let offsetField = p + WALRecord.frameOverhead
                guard raw[offsetField] == UInt8(truncatingIfNeeded: p),
                    UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offsetField, as: UInt64.self)) == UInt64(p)
                else { continue }
                let synced = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offsetField + 8, as: UInt64.self))
                let length = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: p, as: UInt32.self)))
                guard synced > UInt64(damage), synced <= UInt64(p), length >= WALRecord.minimumLength,
                    length <= count - offsetField, WALRecordType(rawValue: raw[p + WALRecord.typeOffset]) != nil
                else { continue }
                candidates += 1
                budget -= length
                if budget < 0 { return .undecided(candidates: candidates) }
                let stored = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: p + 4, as: UInt32.self))
                if CRC32C.update(0, UnsafeRawBufferPointer(rebasing: raw[offsetField..<(offsetField + length)])) == stored {
                    return .writtenAfterSync(offset: p, syncedThrough: Int(synced))
                }
            }
            return .none
        }
    }
}
