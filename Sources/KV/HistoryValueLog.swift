#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Checksum
import Synchronization

/// Where the values of superseded versions live, so that memory follows the
/// live keys and not every write since the last compaction (etcd keeps its
/// history in bbolt, on disk, for the same reason).
///
/// When a key gets a new version, the value of the one before is appended to
/// the active segment file in `directory` and the version keeps only a
/// ``SpilledValue`` (segment, offset, length). The latest version of every
/// key stays in memory, so current reads and writes never touch these files;
/// reads of older revisions, watch replays, snapshots and hashes read them
/// back.
///
/// The files are a cache, not state: nothing is fsynced, and a restart
/// rebuilds them from the snapshot and the WAL. Each is unlinked as soon as it
/// is created, so it goes with its last descriptor: nothing is left behind by a
/// crash, and a second process pointed at the same directory cannot touch
/// this one's (`df` counts them, `du` does not). Values are appended in the
/// order they are superseded, so a compaction frees whole segments from the
/// oldest on: a segment is closed when the last version pointing into it is
/// gone (frozen copies being written as snapshots keep theirs).
///
/// If a segment cannot be created or written (disk full, I/O error), spilling
/// stops for the life of the process and values stay in memory, as without
/// this log: nothing is lost, only memory is not saved. `onFailure` hears why,
/// once. Every value carries a CRC-32C: a value that does not read back, or
/// reads back different, is a failing disk under a file this process wrote
/// and holds open; it stops the process with the errno or the mismatch (etcd
/// panics on a failed bbolt read, too).
///
/// Not thread-safe: owned by the store's apply thread. Segments are safe to
/// read from any thread.
public final class HistoryValueLog {
    public let directory: String
    /// A segment takes values until it holds this many bytes (a larger value
    /// gets a segment of its own).
    let segmentSize: Int
    /// Appended bytes are written to the file in batches of about this many.
    let flushThreshold: Int
    let onFailure: @Sendable (String) -> Void
    private var active: HistoryValueSegment?
    private var nextNumber = 1
    /// Why spilling stopped, if it did.
    public private(set) var failure: String?
    /// Opens a new segment file at a path (tests put /dev/full here).
    var openFile: (String) -> Int32 = { path in
        path.withCString { open($0, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
    }
    /// Segments created so far, and those alive now (the active one and
    /// those versions or frozen copies still point into).
    public private(set) var segmentsCreated = 0
    public var liveSegments: Int { alive.value.load(ordering: .relaxed) }
    private let alive = SegmentCount()

    /// Creates `directory` if needed.
    public init(
        directory: String, segmentSize: Int = 64 << 20, flushThreshold: Int = 64 << 10,
        onFailure: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.directory = directory
        // Offsets are 32-bit.
        self.segmentSize = min(max(segmentSize, 1), Int(UInt32.max))
        self.flushThreshold = max(flushThreshold, 1)
        self.onFailure = onFailure
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            fail("cannot create \(directory): \(String(cString: strerror(errno)))")
        }
    }


    /// Stores `bytes`; nil if spilling has stopped (keep the value in memory).
    func append(_ bytes: [UInt8]) -> SpilledValue? {
        if bytes.isEmpty { return SpilledValue(segment: nil, offset: 0, count: 0) }
        guard failure == nil, let count = UInt32(exactly: bytes.count) else { return nil }
        if let segment = active, segment.size > 0, segment.size + bytes.count > segmentSize {
            if let error = segment.flush() { fail(error) }
            active = nil
        }
        if active == nil {
            guard failure == nil else { return nil }
            let path = directory + "/values-\(getpid())-\(nextNumber)"
            nextNumber += 1
            let fd = openFile(path)
            guard fd >= 0 else {
                fail("cannot create \(path): \(String(cString: strerror(errno)))")
                return nil
            }
            // Anonymous from now on: the descriptor keeps it (see above).
            _ = unlink(path)
            segmentsCreated += 1
            active = HistoryValueSegment(fd: fd, path: path, flushThreshold: flushThreshold, count: alive)
        }
        guard let segment = active else { return nil }
        let (offset, error) = segment.append(bytes)
        // The bytes are held in memory when the write failed: the value is safe.
        if let error { fail(error) }
        return SpilledValue(segment: segment, offset: UInt32(offset), count: count, checksum: CRC32C.checksum(bytes))
    }

    private func fail(_ reason: String) {
        guard failure == nil else { return }
        failure = reason
        onFailure("history values stay in memory from now on: \(reason)")
    }
}

/// One file of a ``HistoryValueLog``: bytes on disk up to `flushed`, then a
/// tail in memory until it is written. Written bytes never change, so reads
/// below `flushed` need no lock.
final class HistoryValueSegment: Sendable {
    let fd: Int32
    /// Where it was created (unlinked since; for messages).
    let path: String
    private let flushThreshold: Int
    private struct Tail {
        var flushed = 0
        var pending: [UInt8] = []
        /// A write failed: the tail stays in memory for good.
        var stuck = false
    }
    private let tail: Mutex<Tail>
    private let count: SegmentCount

    init(fd: Int32, path: String, flushThreshold: Int, count: SegmentCount) {
        self.fd = fd
        self.path = path
        self.flushThreshold = flushThreshold
        self.count = count
        tail = Mutex(Tail())
        count.value.add(1, ordering: .relaxed)
    }

    deinit {
        _ = close(fd)
        count.value.subtract(1, ordering: .relaxed)
    }

    /// Bytes appended so far.
    var size: Int { tail.withLock { $0.flushed + $0.pending.count } }

    /// Appends; returns the offset and, if writing the tail failed, why.
    func append(_ bytes: [UInt8]) -> (Int, String?) {
        tail.withLock { tail in
            let offset = tail.flushed + tail.pending.count
            tail.pending.append(contentsOf: bytes)
            guard tail.pending.count >= flushThreshold else { return (offset, nil) }
            return (offset, write(&tail))
        }
    }

    /// Writes the tail to the file and lets its buffer go (the segment is
    /// full); why it failed, if it did.
    func flush() -> String? {
        tail.withLock { tail in
            let error = write(&tail)
            if !tail.stuck { tail.pending = [] }
            return error
        }
    }

    private func write(_ tail: inout Tail) -> String? {
        guard !tail.stuck, !tail.pending.isEmpty else { return nil }
        var done = 0
        let count = tail.pending.count
        let start = tail.flushed
        while done < count {
            let n = tail.pending.withUnsafeBytes { buffer in
                pwrite(fd, buffer.baseAddress.map { $0 + done }, count - done, off_t(start + done))
            }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                tail.stuck = true
                return "cannot write \(path): \(String(cString: strerror(n < 0 ? errno : EIO)))"
            }
            done += n
        }
        tail.flushed += count
        tail.pending.removeAll(keepingCapacity: true)
        return nil
    }

    /// The `count` bytes at `offset`.
    func read(offset: Int, count: Int) -> [UInt8] {
        let inMemory: [UInt8]? = tail.withLock { tail in
            guard offset >= tail.flushed else { return nil }
            let start = offset - tail.flushed
            return Array(tail.pending[start..<(start + count)])
        }
        if let inMemory { return inMemory }
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var done = 0
            while done < count {
                let n = pread(fd, buffer.baseAddress.map { $0 + done }, count - done, off_t(offset + done))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    // A file this process wrote and still holds open does not
                    // read back: the disk is failing (see HistoryValueLog).
                    let reason = n < 0 ? String(cString: strerror(errno)) : "unexpected end of file"
                    fatalError("history values: cannot read \(count) bytes at \(offset) of \(path): \(reason)")
                }
                done += n
            }
            initialized = count
        }
    }
}

/// How many segments of one log are alive (they may die on any thread).
final class SegmentCount: Sendable {
    let value = Atomic<Int>(0)
}

/// Where a superseded version's value is (``HistoryValueLog``), with its
/// CRC-32C; an empty value has no segment.
struct SpilledValue: Sendable {
    let segment: HistoryValueSegment?
    let offset: UInt32
    let count: UInt32
    let checksum: UInt32

    init(segment: HistoryValueSegment?, offset: UInt32, count: UInt32, checksum: UInt32 = 0) {
        self.segment = segment
        self.offset = offset
        self.count = count
        self.checksum = checksum
    }

    func load() -> [UInt8] {
        guard let segment, count > 0 else { return [] }
        let bytes = segment.read(offset: Int(offset), count: Int(count))
        let found = CRC32C.checksum(bytes)
        guard found == checksum else {
            // See HistoryValueLog: the disk returned other bytes than were written.
            fatalError("history values: \(count) bytes at \(offset) of \(segment.path) fail their checksum (\(found) != \(checksum))")
        }
        return bytes
    }
}
