#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Thin wrappers over the POSIX calls the storage needs. Every failure becomes a
/// ``WALError/io(operation:path:errno:)`` naming the call and the path.
enum FileIO {
    static func error(_ operation: String, _ path: String) -> WALError {
        .io(operation: operation, path: path, errno: errno)
    }

    static func joined(_ dir: String, _ name: String) -> String {
        dir.hasSuffix("/") ? dir + name : dir + "/" + name
    }

    /// Opens `path`, retrying on EINTR.
    static func openFile(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(WALError) -> Int32 {
        while true {
            let fd = path.withCString { open($0, flags | O_CLOEXEC, mode) }
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw error("open", path)
        }
    }

    static func closeFile(_ fd: Int32) { _ = close(fd) }

    /// Writes all of `bytes` at `offset` (handles short writes and EINTR).
    static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws(WALError) {
        try pwriteAll(fd, bytes[...], at: offset, path: path)
    }

    /// Writes all of `bytes` (a slice, written in place) at `offset`.
    static func pwriteAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>, at offset: Int, path: String) throws(WALError) {
        var done = 0
        let count = bytes.count
        while done < count {
            let n = bytes.withUnsafeBytes { buf in
                pwrite(fd, buf.baseAddress.map { $0 + done }, count - done, off_t(offset + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw error("write", path)
            }
            if n == 0 { throw .io(operation: "write (no progress)", path: path, errno: EIO) }
            done += n
        }
    }

    /// fdatasync: the data and the metadata needed to read it back (size) are durable.
    static func dataSync(_ fd: Int32, path: String) throws(WALError) {
        #if os(Linux)
        while fdatasync(fd) != 0 {
            if errno == EINTR { continue }
            throw error("fdatasync", path)
        }
        #else
        // Darwin's fsync does not reach the platter; F_FULLFSYNC does. (Untested here.)
        while fcntl(fd, F_FULLFSYNC) != 0 {
            if errno == EINTR { continue }
            throw error("fcntl(F_FULLFSYNC)", path)
        }
        #endif
    }

    /// fsync: data and all metadata durable (directories, renamed files).
    static func fullSync(_ fd: Int32, path: String) throws(WALError) {
        #if os(Linux)
        while fsync(fd) != 0 {
            if errno == EINTR { continue }
            throw error("fsync", path)
        }
        #else
        // As in dataSync: Darwin's fsync leaves the drive's cache. (Untested here.)
        while fcntl(fd, F_FULLFSYNC) != 0 {
            if errno == EINTR { continue }
            throw error("fcntl(F_FULLFSYNC)", path)
        }
        #endif
    }

    /// fsyncs a directory so entries created, renamed or removed in it are durable.
    static func syncDirectory(_ path: String) throws(WALError) {
        let fd = try openFile(path, O_RDONLY | O_DIRECTORY)
        defer { closeFile(fd) }
        try fullSync(fd, path: path)
    }

    static func truncate(_ fd: Int32, to length: Int, path: String) throws(WALError) {
        while ftruncate(fd, off_t(length)) != 0 {
            if errno == EINTR { continue }
            throw error("ftruncate", path)
        }
    }

    /// Allocates `length` bytes of zeros for `fd`, extending the file (best
    /// effort: a file system that cannot is used as it is). fdatasync after an
    /// append inside the allocated size need not update the file's size, which
    /// measured about a third faster here.
    static func preallocate(_ fd: Int32, length: Int) {
        _ = posix_fallocate(fd, 0, off_t(length))
    }

    /// Whether `bytes[start...]` is all zeros (a preallocated segment's
    /// unused tail: megabytes, so compared with memcmp, not byte by byte).
    static func isAllZero(_ bytes: [UInt8], from start: Int) -> Bool {
        let zeros = [UInt8](repeating: 0, count: 64 << 10)
        return bytes.withUnsafeBytes { all in
            zeros.withUnsafeBytes { zero in
                guard let base = all.baseAddress, let zeroBase = zero.baseAddress else { return true }
                var offset = start
                while offset < all.count {
                    let n = min(zero.count, all.count - offset)
                    if memcmp(base + offset, zeroBase, n) != 0 { return false }
                    offset += n
                }
                return true
            }
        }
    }

    static func renameFile(_ from: String, _ to: String) throws(WALError) {
        let rc = from.withCString { f in to.withCString { t in rename(f, t) } }
        if rc != 0 { throw error("rename to '\(to)' of", from) }
    }

    static func removeFile(_ path: String) throws(WALError) {
        if path.withCString({ unlink($0) }) != 0 && errno != ENOENT { throw error("unlink", path) }
    }

    /// Creates `path` (one level) if missing. Returns whether it was created.
    @discardableResult
    static func makeDirectory(_ path: String) throws(WALError) -> Bool {
        if path.withCString({ mkdir($0, 0o755) }) == 0 { return true }
        if errno == EEXIST {
            var st = stat()
            if path.withCString({ stat($0, &st) }) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { return false }
            throw .io(operation: "mkdir (exists, not a directory)", path: path, errno: ENOTDIR)
        }
        throw error("mkdir", path)
    }

    /// Creates `path` and missing parents, like `mkdir -p`, fsyncing each parent
    /// whose listing changed — and `path`'s own parent in any case: a run
    /// that crashed between creating `path` and that sync left its entry
    /// possibly not durable, and this run must not build on it unsynced.
    static func makeDirectories(_ path: String) throws(WALError) {
        var prefix = path.hasPrefix("/") ? "/" : ""
        var parentSynced = false
        for part in path.split(separator: "/") where !part.isEmpty {
            let parent = prefix.isEmpty ? "." : prefix
            prefix += prefix.isEmpty || prefix.hasSuffix("/") ? String(part) : "/" + part
            parentSynced = false
            if try makeDirectory(prefix) {
                try syncDirectory(parent)
                parentSynced = true
            }
            if prefix == path || prefix + "/" == path, !parentSynced { try syncDirectory(parent) }
        }
    }

    /// Names in `path`, excluding `.` and `..`.
    static func listDirectory(_ path: String) throws(WALError) -> [String] {
        guard let dir = path.withCString({ opendir($0) }) else { throw error("opendir", path) }
        defer { closedir(dir) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw error("readdir", path) }
                break
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The whole content of `path`.
    static func readFile(_ path: String) throws(WALError) -> [UInt8] {
        let fd = try openFile(path, O_RDONLY)
        defer { closeFile(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 { throw error("fstat", path) }
        // A size no read could fill (a damaged inode, a huge sparse file) is
        // an error here, not a failed allocation that stops the process.
        let memory = Int64(sysconf(Int32(_SC_PHYS_PAGES))) * Int64(sysconf(Int32(_SC_PAGESIZE)))
        guard st.st_size >= 0, memory <= 0 || Int64(st.st_size) <= memory else {
            throw .corrupted(file: path, offset: 0, reason: "size \(st.st_size) bytes is more than this machine's memory")
        }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < bytes.count {
            let want = bytes.count - done
            let n = bytes.withUnsafeMutableBytes { buf in
                read(fd, buf.baseAddress.map { $0 + done }, want)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw error("read", path)
            }
            if n == 0 { break }  // shrank underneath us
            done += n
        }
        if done < bytes.count { bytes.removeSubrange(done...) }
        return bytes
    }

    /// Takes an exclusive advisory lock on `path` (created if missing), returning its fd.
    ///
    /// A lock held elsewhere is tried again for up to `patience`: a process
    /// this one spawns holds a copy of every open descriptor between its fork
    /// and its exec (O_CLOEXEC acts only at exec), so a storage closed and
    /// reopened in the same process can find its lock briefly still held.
    static func lock(_ path: String, patience: Duration = .seconds(1)) throws(WALError) -> Int32 {
        let fd = try openFile(path, O_RDWR | O_CREAT)
        let deadline = ContinuousClock.now + patience
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            if code == EINTR { continue }
            if code == EWOULDBLOCK, ContinuousClock.now < deadline {
                usleep(10_000)
                continue
            }
            closeFile(fd)
            if code == EWOULDBLOCK { throw .locked(path: path) }
            throw .io(operation: "flock", path: path, errno: code)
        }
        return fd
    }
}

/// `strerror` text for `code`.
func errnoString(_ code: Int32) -> String {
    guard let s = strerror(code) else { return "errno \(code)" }
    return String(cString: s)
}
