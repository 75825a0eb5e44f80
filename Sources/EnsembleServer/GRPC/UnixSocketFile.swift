import CoreFoundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The file behind a unix-socket listener (etcd's `unix://` client URLs).
/// Go's listener, which etcd uses, refuses a path another listener serves and
/// removes its own file when closed; this does the same, and also replaces a
/// file that no one listens on any more (left by a killed member).
struct UnixSocketFile: Sendable {
    let path: String
    /// The file's identity once bound: only that file is removed on close.
    private(set) var identity: (device: UInt64, inode: UInt64)?

    init(path: String) { self.path = path }

    /// Whether a process accepts connections on the socket at `path` now.
    static func isServed(_ path: String) -> Bool {
        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }

    static func fileIdentity(_ path: String) -> (device: UInt64, inode: UInt64)? {
        FileStat.of(path).map { (UInt64($0.st_dev), UInt64($0.st_ino)) }
    }

    /// Notes the file just bound.
    mutating func bound() { identity = Self.fileIdentity(path) }

    /// Removes the file if it is still the one this listener bound.
    func remove() {
        guard let identity, let now = Self.fileIdentity(path), now == identity else { return }
        unlink(path)
    }
}
