import Foundation
import Testing

@testable import RaftStorage

/// The snapshot file writer: exactly the bytes appended, whatever their
/// sizes against the 4 KiB blocks O_DIRECT writes, then a header patched in.
@Suite struct DirectFileWriterTests {
    @Test(arguments: [0, 1, 17, 4095, 4096, 4097, 65_536 + 3, (1 << 20) + 17, 3 << 20])
    func theFileHoldsExactlyWhatWasAppended(length: Int) throws {
        // Direct where the file system takes it, and through the page cache.
        for tryDirect in [true, false] {
            let path = NSTemporaryDirectory() + "direct-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: path) }
            var generator = SystemRandomNumberGenerator()
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            // A small buffer, so appends cross its end too.
            let file = try DirectFileWriter(path: path, capacity: 8192, tryDirect: tryDirect)
            var start = 0
            while start < bytes.count {
                let end = min(bytes.count, start + Int.random(in: 1...20_000))
                try file.append(bytes[start..<end])
                start = end
            }
            try file.finish()
            let header: [UInt8] = [9, 8, 7]
            if length >= header.count { try file.patch(header, at: 0) }
            try file.fullSync()
            file.close()
            var expected = bytes
            if length >= header.count { expected.replaceSubrange(0..<3, with: header) }
            #expect(try FileIO.readFile(path) == expected, "\(path), \(length) bytes, direct: \(file.direct)")
            if !tryDirect { #expect(!file.direct) }
        }
    }

    /// On this machine's ext4 the snapshot writer bypasses the page cache
    /// (what it is for); a file system that refuses O_DIRECT gets buffered
    /// writes, as above.
    @Test func ext4TakesODirect() throws {
        // GNU stat names ext4 "ext2/ext3" (one magic number for the three).
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/stat")
        process.arguments = ["-f", "-c", "%T", NSTemporaryDirectory()]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let type = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard type.hasPrefix("ext2/ext3") else { return }
        let path = NSTemporaryDirectory() + "direct-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try DirectFileWriter(path: path)
        file.close()
        #expect(file.direct)
    }
}
