#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a new file front to back, with O_DIRECT where the file system
/// takes it (ext4, xfs): the bytes go from an aligned buffer here to the
/// device, without a copy into the page cache. For a snapshot of hundreds of
/// megabytes that copy (and the page allocation and reclaim behind it) cost
/// more CPU than encoding the state, and pushed useful pages out of the cache.
/// Where O_DIRECT is refused (tmpfs before Linux 6.6) it writes through the
/// page cache.
///
/// Contract: ``append(_:)`` any number of times, then ``finish()`` once; the
/// file then holds exactly the appended bytes and is open for small
/// unaligned ``patch(_:at:)`` writes (a header) through the page cache. The
/// caller syncs (``sync()``) and closes (``close()``); nothing is durable
/// before a sync.
final class DirectFileWriter {
    /// O_DIRECT needs buffers, offsets and lengths aligned to the device's
    /// logical block; 4 KiB covers every common one.
    static let alignment = 4096

    /// Glibc exposes O_DIRECT only with _GNU_SOURCE, which Swift's module
    /// does not define; its value is the kernel's, per architecture (nil:
    /// not tried — elsewhere the same bits can mean O_DIRECTORY).
    #if os(Linux) && arch(x86_64)
    static let oDirect: Int32? = 0o40000
    #elseif os(Linux) && arch(arm64)
    static let oDirect: Int32? = 0o200000
    #else
    static let oDirect: Int32? = nil
    #endif

    let fd: Int32
    let path: String
    /// Whether the file is written with O_DIRECT.
    private(set) var direct: Bool
    /// The aligned buffer, `capacity` bytes.
    private let base: UnsafeMutableRawPointer
    private let capacity: Int
    private var filled = 0
    /// Bytes written to the file before the buffer's contents.
    private var flushed = 0
    private var finished = false

    /// Creates (or truncates) `path`. `capacity` is rounded up to the
    /// alignment; `tryDirect: false` writes through the page cache.
    init(path: String, capacity: Int = 1 << 20, tryDirect: Bool = true) throws(WALError) {
        let size = max(Self.alignment, (capacity + Self.alignment - 1) / Self.alignment * Self.alignment)
        var opened: Int32?
        if tryDirect, let oDirect = Self.oDirect {
            opened = try? FileIO.openFile(path, O_WRONLY | O_CREAT | O_TRUNC | oDirect)
        }
        direct = opened != nil
        if opened == nil { opened = try FileIO.openFile(path, O_WRONLY | O_CREAT | O_TRUNC) }
        guard let fd = opened else { throw .io(operation: "open", path: path, errno: EIO) }
        self.fd = fd
        self.path = path
        self.capacity = size
        base = .allocate(byteCount: size, alignment: Self.alignment)
    }

    deinit { base.deallocate() }

    /// Bytes appended so far.
    var length: Int { flushed + filled }

    /// Appends `bytes`; whole buffers go to the file as they fill.
    func append(_ bytes: UnsafeRawBufferPointer) throws(WALError) {
        precondition(!finished, "append after finish")
        guard let source = bytes.baseAddress else { return }
        var start = 0
        while start < bytes.count {
            let n = min(capacity - filled, bytes.count - start)
            (base + filled).copyMemory(from: source + start, byteCount: n)
            filled += n
            start += n
            if filled == capacity { try writeBuffer(count: filled) }
        }
    }

    func append(_ bytes: ArraySlice<UInt8>) throws(WALError) {
        var failure: WALError?
        bytes.withUnsafeBytes { raw in
            do throws(WALError) { try append(raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Writes what is left. With O_DIRECT the last block goes out padded
    /// with zeros and the file is cut back to ``length``; the descriptor
    /// then leaves O_DIRECT, for ``patch(_:at:)``.
    func finish() throws(WALError) {
        precondition(!finished, "finish twice")
        let total = length
        if filled > 0 {
            if direct {
                let padded = (filled + Self.alignment - 1) / Self.alignment * Self.alignment
                (base + filled).initializeMemory(as: UInt8.self, repeating: 0, count: padded - filled)
                try writeBuffer(count: padded)
            } else {
                try writeBuffer(count: filled)
            }
        }
        finished = true
        // The padding (written even if the last write fell back to the page cache).
        if flushed != total { try FileIO.truncate(fd, to: total, path: path) }
        if direct { try leaveDirect() }
    }

    /// Clears O_DIRECT on the descriptor: later writes go through the page cache.
    private func leaveDirect() throws(WALError) {
        if let oDirect = Self.oDirect {
            let flags = fcntl(fd, F_GETFL)
            if flags < 0 || fcntl(fd, F_SETFL, flags & ~oDirect) != 0 { throw FileIO.error("fcntl(F_SETFL)", path) }
        }
        direct = false
    }

    /// Writes `bytes` at `offset`, once finished (through the page cache).
    func patch(_ bytes: [UInt8], at offset: Int) throws(WALError) {
        precondition(finished, "patch before finish")
        try FileIO.pwriteAll(fd, bytes, at: offset, path: path)
    }

    func sync() throws(WALError) { try FileIO.dataSync(fd, path: path) }
    func fullSync() throws(WALError) { try FileIO.fullSync(fd, path: path) }
    func close() { FileIO.closeFile(fd) }

    private func writeBuffer(count: Int) throws(WALError) {
        var done = 0
        while done < count {
            let n = pwrite(fd, base + done, count - done, off_t(flushed + done))
            if n < 0 {
                if errno == EINTR { continue }
                // A file system that took O_DIRECT at open but refuses the
                // write (some network and FUSE ones): through the page cache.
                if errno == EINVAL && direct {
                    try leaveDirect()
                    continue
                }
                throw FileIO.error("write", path)
            }
            if n == 0 { throw .io(operation: "write (no progress)", path: path, errno: EIO) }
            // A short O_DIRECT write ends on a block boundary; the rest follows.
            done += n
        }
        flushed += count
        filled = 0
    }
}
