import Bolt
import Foundation
import KV
import Raft
import RaftStorage

/// Restoring a backup (a file `etcdctl snapshot save` wrote from any member)
/// into the data directory of a member of a **new** cluster, as `etcdctl
/// snapshot restore` does for etcd: run it once per member with that member's
/// `--name`, `--initial-advertise-peer-urls` and the same `--initial-cluster`
/// and `--initial-cluster-token`, then start every member with `ensemble
/// serve` on its data directory.
///
/// The keys, their history and revisions, leases and alarms come from the
/// snapshot; the member directory and cluster id are the new cluster's (the
/// ids `ensemble serve` would derive from the same flags: use a new
/// `--initial-cluster-token` so that no member of the old cluster is taken
/// for one of the new). Every lease counts down its whole granted TTL again,
/// as in etcd 3.4. Alarms stay (etcd keeps them too): `alarm disarm` clears
/// them. The data directory holds a Raft snapshot at index 1, term 1 that
/// names every new member a voter, so all members start from the same state
/// and elect a leader. It is written beside its place and renamed into it,
/// so a failed restore leaves nothing.
public enum SnapshotRestore {
    /// What a snapshot file holds (`etcdctl snapshot status`'s columns). For
    /// a file in etcd's format (bbolt, what the Snapshot call streams), the
    /// same figures etcdctl prints for it: a CRC-32C of every bucket's name,
    /// keys and values, the last revision in the key bucket, the entries of
    /// every bucket, the database's size. For an older Ensemble file, the
    /// state's ``KVStateMachine/hashKV(revision:)``, its revision, its keys
    /// with retained history and the state's bytes.
    public struct Status: Sendable, Equatable {
        public var hash: UInt32
        public var revision: Int64
        public var totalKeys: Int
        public var totalSize: Int
        /// What the restore leaves behind (an etcd backup with auth enabled).
        public var warnings: [String] = []
    }

    /// Reads and checks a snapshot file (its SHA-256 and the state's encoding).
    public static func status(file path: String, verifyHash: Bool = true) throws -> Status {
        try load(path, verifyHash: verifyHash).status
    }

    /// Writes `configuration.dataDirectory` for member `configuration.name` of
    /// the cluster `configuration.initialCluster` names, from the snapshot in
    /// `file`. Refuses a data directory that exists and is not empty.
    /// `verifyHash` false skips the file's SHA-256 check (`--skip-hash-check`).
    /// Returns the new member and what the file held (read once: an etcd
    /// backup may be gigabytes).
    @discardableResult
    public static func restore(
        file path: String, into configuration: MemberConfiguration, verifyHash: Bool = true
    ) throws -> (identity: MemberIdentity, status: Status) {
        let (machine, status) = try load(path, verifyHash: verifyHash)
        let founders = try configuration.parsedInitialCluster().map { founder in
            Member(
                id: ClusterService.memberID(peerURLs: founder.peerURLs, salt: configuration.initialClusterToken),
                name: founder.name, peerURLs: founder.peerURLs)
        }
        guard let me = founders.first(where: { $0.name == configuration.name }) else {
            throw ConfigurationError("couldn't find local name \"\(configuration.name)\" in the initial cluster configuration")
        }
        if !configuration.initialAdvertisePeerURLs.isEmpty,
            Set(configuration.initialAdvertisePeerURLs) != Set(me.peerURLs)
        {
            throw ConfigurationError(
                "--initial-advertise-peer-urls \(configuration.initialAdvertisePeerURLs.joined(separator: ",")) "
                    + "differ from --initial-cluster's for \(me.name) (\(me.peerURLs.joined(separator: ",")))")
        }
        // Without a trailing slash: the staging directory goes beside it, not in it.
        var directory = configuration.dataDirectory
        while directory.count > 1, directory.hasSuffix("/") { directory.removeLast() }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue, (try FileManager.default.contentsOfDirectory(atPath: directory)).isEmpty else {
                throw ConfigurationError("data-dir \"\(directory)\" exists")
            }
        }

        let clusterID = ClusterService.clusterID(memberIDs: founders.map(\.id))
        machine.replaceMembers(clusterID: clusterID, with: founders)
        machine.forgetLeaseCheckpoints()
        let snapshot = Snapshot(
            metadata: SnapshotMetadata(index: 1, term: 1, confState: ConfState(voters: founders.map(\.id).sorted())),
            data: machine.snapshot())
        let identity = MemberIdentity(name: me.name, memberID: me.id, clusterID: clusterID)
        // Written beside its place, then renamed into it (over an empty
        // directory): a failure leaves no half-restored member behind.
        let staging = directory + ".restoring-\(ProcessInfo.processInfo.processIdentifier)"
        try? FileManager.default.removeItem(atPath: staging)
        do {
            let storage = try DiskStorage.open(directory: staging + "/member")
            try storage.append(hardState: HardState(term: 1, vote: .none, commit: 1), entries: [], snapshot: snapshot)
            try storage.sync()
            try storage.close()
            try identity.save(in: staging)
            guard rename(staging, directory) == 0 else {
                throw ConfigurationError("cannot rename \(staging) to \(directory): \(String(cString: strerror(errno)))")
            }
            // The rename lasts only once the parent directory is synced.
            let parent = (directory as NSString).deletingLastPathComponent
            let fd = open(parent.isEmpty ? "." : parent, O_RDONLY | O_DIRECTORY)
            if fd >= 0 {
                defer { close(fd) }
                guard fsync(fd) == 0 else {
                    throw ConfigurationError("cannot sync \(parent): \(String(cString: strerror(errno)))")
                }
            }
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw error
        }
        return (identity, status)
    }

    /// The whole file, read straight into one array (a backup of etcd's can
    /// be gigabytes: no second copy on the way). What is not a regular file
    /// (a pipe, `/dev/stdin`) is read to its end instead.
    private static func readFile(_ path: String) throws -> [UInt8] {
        func failure(_ what: String, _ code: Int32 = errno) -> ConfigurationError {
            ConfigurationError("cannot read \(path): \(what): \(String(cString: strerror(code)))")
        }
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw failure("open") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure("stat") }
        guard info.st_mode & S_IFMT == S_IFREG else {
            do {
                return Array(try FileHandle(fileDescriptor: fd, closeOnDealloc: false).readToEnd() ?? Data())
            } catch {
                throw ConfigurationError("cannot read \(path): \(error.localizedDescription)")
            }
        }
        let size = Int(info.st_size)
        var readError: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            guard let base = buffer.baseAddress else { return }
            while count < size {
                let n = read(fd, base + count, size - count)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    if n < 0 { readError = errno }
                    return
                }
                count += n
            }
        }
        if readError != 0 { throw failure("read", readError) }
        guard bytes.count == size else { throw ConfigurationError("cannot read \(path): it shrank while being read") }
        return bytes
    }

    /// The file's state, decoded, and its status (one read of the file).
    private static func load(_ path: String, verifyHash: Bool) throws -> (machine: KVStateMachine, status: Status) {
        let file = try readFile(path)
        let machine = KVStateMachine()
        do {
            if BoltFile.isBolt(file) {
                let database = try EtcdBackupFile.database(in: consume file, verifyHash: verifyHash)
                let bolt = try BoltFile(database)
                try machine.restore(etcdBackup: bolt)
                return (machine, try EtcdBackupFile.status(of: bolt))
            }
            let state = try MaintenanceService.state(inSnapshotFile: file, verifyHash: verifyHash)
            try machine.restore(state)
            let hash = try machine.hashKV().hash
            return (
                machine,
                Status(hash: hash, revision: machine.store.revision, totalKeys: machine.store.keyCount, totalSize: state.count)
            )
        } catch let error as ConfigurationError {
            throw error
        } catch {
            throw ConfigurationError("\(path): \(error)")
        }
    }
}
