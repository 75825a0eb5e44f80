/// Appends framed records to one open segment file. Records collect in a
/// user-space buffer and reach the file in one `pwrite` at ``sync()`` (or when
/// the buffer grows past `flushThreshold`): group commit costs one write and one
/// fdatasync per batch, not a syscall per record.
///
/// Durability only comes from ``sync()``. Unsynced records are never handed to
/// the kernel on ``close()``: if the process died after that, recovery could
/// replay records from the page cache that a later power loss erases.
final class SegmentWriter {
    /// fdatasync, replaceable so tests can make it fail.
    typealias DataSync = (_ fd: Int32, _ path: String) throws(WALError) -> Void

    let path: String
    let name: SegmentName
    private(set) var fd: Int32
    /// End of the valid data, counting buffered records; the next record goes here.
    private(set) var offset: Int
    /// The file is durable up to here: the last successful fdatasync covered it.
    /// Every record carries this value (see ``WALRecord``).
    private(set) var syncedOffset: Int
    /// The first failed write or sync; after it the writer refuses all I/O.
    private(set) var failure: WALError?
    /// Records not yet handed to the kernel; they start at `offset - pending.count`.
    private var pending: [UInt8] = []
    private let dataSync: DataSync
    static let flushThreshold = 1 << 20

    /// Takes ownership of `fd`, whose first `offset` bytes must already be durable.
    init(path: String, name: SegmentName, fd: Int32, offset: Int, dataSync: @escaping DataSync = FileIO.dataSync) {
        self.path = path
        self.name = name
        self.fd = fd
        self.offset = offset
        self.syncedOffset = offset
        self.dataSync = dataSync
    }

    deinit { close() }

    /// Bytes appended since the last fdatasync (buffered or written).
    var unsyncedBytes: Int { offset - syncedOffset }

    /// Frames `record` at the current offset into the buffer. The caller has
    /// checked ``WALRecord/framedLength()``.
    func append(_ record: WALRecord) throws(WALError) {
        if let failure { throw .failed(previous: failure.description) }
        let start = pending.count
        record.frame(into: &pending, offset: offset, syncedThrough: syncedOffset)
        offset += pending.count - start
        if pending.count >= Self.flushThreshold { try flush() }
    }

    /// Hands buffered records to the kernel (no durability yet).
    func flush() throws(WALError) {
        if let failure { throw .failed(previous: failure.description) }
        guard !pending.isEmpty else { return }
        do {
            try FileIO.pwriteAll(fd, pending, at: offset - pending.count, path: path)
        } catch {
            throw fail(error)
        }
        pending.removeAll(keepingCapacity: pending.capacity <= 4 * Self.flushThreshold)
    }

    /// One write of the buffer and one fdatasync. Returns false (and does
    /// nothing) when there is nothing to sync.
    @discardableResult
    func sync() throws(WALError) -> Bool {
        guard unsyncedBytes > 0 else { return false }
        try flush()
        do {
            try dataSync(fd, path)
        } catch {
            throw fail(error)
        }
        syncedOffset = offset
        return true
    }

    /// Records `error` and cuts the file back to its synced length (best
    /// effort). After a failed fdatasync Linux may mark the dirty pages clean,
    /// so they could be read back later although they never reached the disk.
    private func fail(_ error: WALError) -> WALError {
        failure = error
        pending = []
        if fd >= 0, (try? FileIO.truncate(fd, to: syncedOffset, path: path)) != nil {
            try? FileIO.fullSync(fd, path: path)
        }
        return error
    }

    /// Closes the file. Buffered records are dropped, not written: they were
    /// never promised durable (``DiskStorage/close()`` syncs first).
    func close() {
        pending = []
        if fd >= 0 {
            FileIO.closeFile(fd)
            fd = -1
        }
    }
}
