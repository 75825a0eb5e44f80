import CoreFoundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `stat` following symbolic links (a Kubernetes Secret mount's files are
/// links whose targets change), for the files a member watches or owns.
enum FileStat {
    #if canImport(Glibc)
    typealias Info = Glibc.stat
    #else
    typealias Info = Darwin.stat
    #endif

    /// The file's attributes, or nil if it cannot be read.
    static func of(_ path: String) -> Info? {
        var info = Info()
        // (fstatat, flags 0: follows links; `stat` alone is ambiguous between
        // the type and the call.)
        guard fstatat(AT_FDCWD, path, &info, 0) == 0 else { return nil }
        return info
    }
}
