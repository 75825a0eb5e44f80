import Foundation

/// Who this member is, kept in `<data-dir>/member.json` from its first start
/// on: the name, member id and cluster id. A restart uses it and ignores the
/// `--initial-*` flags, as etcd does.
public struct MemberIdentity: Codable, Sendable, Equatable {
    public var name: String
    public var memberID: UInt64
    public var clusterID: UInt64

    public init(name: String, memberID: UInt64, clusterID: UInt64) {
        self.name = name
        self.memberID = memberID
        self.clusterID = clusterID
    }

    static func path(in directory: String) -> String { directory + "/member.json" }

    /// The saved identity, or nil for a new data directory.
    public static func load(from directory: String) throws -> MemberIdentity? {
        let path = path(in: directory)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(MemberIdentity.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw ConfigurationError("\(path) is unreadable (\(error)); it names this member and must not be edited")
        }
    }

    /// Writes atomically (temporary file, fsync, rename).
    public func save(in directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        let path = Self.path(in: directory)
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data) else {
            throw ConfigurationError("cannot write \(temporary)")
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
        try handle.synchronize()
        try handle.close()
        guard rename(temporary, path) == 0 else { throw ConfigurationError("cannot rename \(temporary) to \(path)") }
        // The rename itself made durable: after a power loss the member must
        // not come back without its identity (and re-derive one from flags).
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY)
        guard directoryFD >= 0 else { throw ConfigurationError("cannot open \(directory) to sync it") }
        defer { close(directoryFD) }
        guard fsync(directoryFD) == 0 else { throw ConfigurationError("cannot sync \(directory)") }
    }
}
