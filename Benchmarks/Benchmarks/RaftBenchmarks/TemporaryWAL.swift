import Glibc
import Raft
import RaftStorage

/// A DiskStorage in a fresh directory on the benchmark machine's real disk
/// (not /tmp, which may be tmpfs), removed when the benchmark ends.
final class TemporaryWAL {
    let storage: DiskStorage
    let path: String
    private var index: UInt64 = 0

    init() throws {
        path = Self.scratchDirectory() + "/wal-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        storage = try DiskStorage.open(directory: path)
    }

    deinit {
        try? storage.close()
        _ = system("rm -rf '\(path)'")
    }

    /// The next entry in sequence, carrying `template`'s payload.
    func next(_ template: Entry) -> Entry {
        index += 1
        return Entry(term: 1, index: index, data: template.data)
    }

    static func entries(count: Int, size: Int) -> [Entry] {
        (0..<count).map { _ in Entry(term: 1, index: 0, data: [UInt8](repeating: 0xAB, count: size)) }
    }

    /// Where to put files: $ENSEMBLE_BENCH_DIR, else .bench-scratch in the current directory.
    static func scratchDirectory() -> String {
        let directory = getenv("ENSEMBLE_BENCH_DIR").map { String(cString: $0) } ?? ".bench-scratch"
        mkdir(directory, 0o755)
        return directory
    }
}

/// `system` is unavailable in Swift's Glibc overlay; call it through the C symbol.
@_silgen_name("system")
private func system(_ command: UnsafePointer<CChar>) -> Int32
