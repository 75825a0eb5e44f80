import Foundation
import Raft
import Testing
@testable import RaftStorage

/// A disk that fills up, for real: a 2 MiB tmpfs mounted for the test (needs
/// root, as CI runs; the test fails rather than skips without it).
@Suite(.serialized) struct FullDiskTests {
    /// Mounts a tmpfs of `size` bytes on a fresh directory for `body`.
    func withSmallDisk(size: Int, _ body: (String) throws -> Void) throws {
        let path = NSTemporaryDirectory() + "raftstorage-full-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try #require(run("/bin/mount", "-t", "tmpfs", "-o", "size=\(size)", "tmpfs", path), "mounting a tmpfs needs root")
        defer { _ = run("/bin/umount", path) }
        try body(path)
    }

    func run(_ tool: String, _ arguments: String...) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    /// Writing until the disk is full: the failing write throws ENOSPC (or
    /// reports the earlier failure), the storage refuses everything after it,
    /// and reopening recovers exactly what was synced before — nothing lost,
    /// nothing half-written served.
    @Test func aFullDiskFailsTheWriteAndLosesNothingSynced() throws {
        try withSmallDisk(size: 2 << 20) { path in
            let data = path + "/member"
            var synced: LogState?
            var failure: WALError?
            try withStorage(data, options: .init(segmentSize: 256 << 10)) { s throws in
                var next: UInt64 = 1
                while failure == nil && next < 100_000 {
                    do {
                        try s.append(
                            hardState: HardState(term: 1, vote: 1, commit: next - 1),
                            entries: makeEntries(next...(next + 9), term: 1, size: 1000))
                        try s.sync()
                        next += 10
                        synced = try LogState(s)
                    } catch let error as WALError {
                        failure = error
                    }
                }
                #expect(failure != nil, "10 MB of entries fit on a 2 MiB disk?")
                if case let .io(_, _, code)? = failure { #expect(code == ENOSPC) }
                // Nothing more is written once a write failed.
                #expect(throws: WALError.self) {
                    try s.append(hardState: nil, entries: makeEntries(next...next, term: 1))
                    try s.sync()
                }
            }
            let before = try #require(synced)
            #expect(before.lastIndex > 100)
            try withStorage(data, options: .init(segmentSize: 256 << 10)) { s throws in
                #expect(try LogState(s) == before)
            }
        }
    }
}
