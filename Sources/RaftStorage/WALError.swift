/// Everything that can go wrong in ``DiskStorage``. Descriptions name the path,
/// the offset or the errno text so an operator knows what to look at.
public enum WALError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A system call failed. `errno` is the raw value; the description includes `strerror`.
    case io(operation: String, path: String, errno: Int32)
    /// A record in a WAL segment (or a snapshot file) is damaged somewhere a crash
    /// cannot explain. `offset` is the byte offset of the damaged record in `file`.
    case corrupted(file: String, offset: Int, reason: String)
    /// The segment sequence has a hole: `expected` is missing before `found`.
    case missingSegment(directory: String, expectedSequence: UInt64, found: String)
    /// The files on disk do not allow rebuilding the synced state (for example a
    /// referenced snapshot is unreadable and the WAL no longer covers its entries).
    case unrecoverable(String)
    /// Another ``DiskStorage`` (in this or another process) holds the directory.
    case locked(path: String)
    /// The caller broke a documented contract (gap in entries, compacting past the
    /// snapshot, bad options). Nothing was written.
    case invalidArgument(String)
    /// An earlier write or sync failed, so the file's durable contents are unknown;
    /// the storage refuses further writes (re-open it to recover).
    case failed(previous: String)
    /// ``DiskStorage/close()`` was called.
    case closed

    public var description: String {
        switch self {
        case let .io(operation, path, code):
            return "\(operation) '\(path)' failed: \(errnoString(code)) (errno \(code))"
        case let .corrupted(file, offset, reason):
            return "corrupted file '\(file)' at offset \(offset): \(reason); refusing to start "
                + "(this damage is not explained by a crash; restore this member from a peer or backup)"
        case let .missingSegment(directory, expected, found):
            return "WAL directory '\(directory)' is missing segment with sequence \(expected) "
                + "(next present: \(found)); refusing to start"
        case let .unrecoverable(reason):
            return "cannot recover storage: \(reason)"
        case let .locked(path):
            return "data directory is locked by another open storage ('\(path)')"
        case let .invalidArgument(reason):
            return "invalid argument: \(reason)"
        case let .failed(previous):
            return "storage unusable after an earlier failure (\(previous)); reopen it to recover"
        case .closed:
            return "storage is closed"
        }
    }
}
