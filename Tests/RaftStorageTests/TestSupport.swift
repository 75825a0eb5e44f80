import Foundation
import Raft
@testable import RaftStorage

/// A fresh directory under the system temp dir, removed by `cleanup()`.
struct TempDir {
    let path: String

    /// `inMemory` puts it on /dev/shm when available: for tests that open
    /// thousands of synthesized crash images, where fsync latency is only noise.
    init(inMemory: Bool = false) {
        let base = inMemory && FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory()
        path = base + "raftstorage-test-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func sub(_ name: String) -> String { path + "/" + name }

    func cleanup() { removeTree(path) }
}

/// Runs `body` with a temp dir that is removed afterwards.
func withTempDir<T>(inMemory: Bool = false, _ body: (TempDir) throws -> T) throws -> T {
    let dir = TempDir(inMemory: inMemory)
    defer { dir.cleanup() }
    return try body(dir)
}

/// Everything Raft can observe through `RaftLogStorage`.
struct LogState: Equatable, CustomStringConvertible {
    var hardState: HardState
    var confState: ConfState
    var snapshot: Snapshot
    var firstIndex: UInt64
    var lastIndex: UInt64
    var entries: [Entry]
    var snapshotTerm: UInt64

    init(_ s: any RaftLogStorage) throws {
        let initial = try s.initialState()
        hardState = initial.hardState
        confState = initial.confState
        // DiskStorage keeps only the metadata in memory; read the file itself.
        if let disk = s as? DiskStorage { snapshot = try disk.readSnapshot() } else { snapshot = try s.snapshot() }
        firstIndex = s.firstIndex
        lastIndex = s.lastIndex
        entries = try s.entries(s.firstIndex..<(s.lastIndex + 1), maxBytes: Int.max)
        snapshotTerm = try s.term(at: s.firstIndex - 1)
    }

    var description: String {
        "LogState(hs: \(hardState), snap: \(snapshot.metadata.index)/\(snapshot.metadata.term), "
            + "first: \(firstIndex), last: \(lastIndex), terms: \(entries.map(\.term)))"
    }
}

func makeEntries(_ range: ClosedRange<UInt64>, term: UInt64, size: Int = 5, salt: UInt8 = 0) -> [Entry] {
    range.map { i in
        Entry(
            term: term, index: i, kind: i % 7 == 3 ? .confChange : .normal,
            data: (0..<size).map { UInt8(truncatingIfNeeded: Int(i) &* 31 &+ $0 &+ Int(salt)) })
    }
}

func readBytes(_ path: String) -> [UInt8] {
    (FileManager.default.contents(atPath: path)).map { [UInt8]($0) } ?? []
}

/// Plain (non-atomic, unsynced) write: tests build crash images, not durable files.
func writeBytes(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { return }
    defer { close(fd) }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
        if n <= 0 { return }
        done += n
    }
}

func listFiles(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
}

/// Copies a data directory (wal/, snap/ files only; not the lock).
func copyDataDir(from: String, to: String) {
    let fm = FileManager.default
    for sub in ["wal", "snap"] {
        try? fm.createDirectory(atPath: to + "/" + sub, withIntermediateDirectories: true)
        for f in listFiles(from + "/" + sub) {
            writeBytes(to + "/" + sub + "/" + f, readBytes(from + "/" + sub + "/" + f))
        }
    }
}

/// Deterministic PRNG so failures reproduce: the one the Raft core uses.
typealias SeededRandom = SplitMix64

/// Opens, runs `body`, closes.
func withStorage<T>(
    _ dir: String, options: DiskStorage.Options = .init(), _ body: (DiskStorage) throws -> T
) throws -> T {
    let s = try DiskStorage.open(directory: dir, options: options)
    defer { try? s.close() }
    return try body(s)
}

func walError(_ body: () throws -> Void) -> WALError? {
    do {
        try body()
        return nil
    } catch let e as WALError {
        return e
    } catch {
        return nil
    }
}

/// `rm -r` with plain syscalls (FileManager.removeItem is slow on Linux).
func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        for name in (try? FileIO.listDirectory(path)) ?? [] { removeTree(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}
