import Bolt
import Checksum
import Crypto
import Foundation
import KV

/// A backup file as etcd 3.4 writes one (`etcdctl snapshot save`): the bbolt
/// database followed by its SHA-256. The Snapshot call streams Ensemble's
/// state in this format (``FrozenKVState/etcdBackup(consistentIndex:)``), so
/// `etcdctl snapshot status` and `etcdctl snapshot restore` take Ensemble's
/// backups, and `ensemble snapshot restore` takes etcd's.
public enum EtcdBackupFile {
    /// A backup file of `database`: the database, then its SHA-256.
    public static func file(database: [UInt8]) -> [UInt8] { database + Array(SHA256.hash(data: database)) }

    /// The database in a backup file, its SHA-256 checked as etcdctl's restore
    /// checks it: a file whose size is 32 past a multiple of 512 ends with the
    /// hash (a bbolt file is whole pages); one without it is refused unless
    /// `verifyHash` is false (`--skip-hash-check`). etcd's messages.
    /// The file's bytes are reused, not copied (an etcd database may be
    /// gigabytes): pass the only reference to them.
    public static func database(in file: consuming [UInt8], verifyHash: Bool) throws(BoltError) -> [UInt8] {
        guard file.count % 512 == 32 else {
            if verifyHash { throw BoltError("snapshot missing hash but --skip-hash-check=false") }
            return file
        }
        let expected = Array(file[(file.count - 32)...])
        file.removeLast(32)
        if verifyHash {
            let actual = Array(SHA256.hash(data: file))
            guard expected == actual else {
                func go(_ bytes: [UInt8]) -> String { "[" + bytes.map(String.init).joined(separator: " ") + "]" }
                throw BoltError("expected sha256 \(go(expected)), got \(go(actual))")
            }
        }
        return file
    }

    /// What `etcdctl snapshot status` prints for the database: a CRC-32C
    /// (Castagnoli) of each bucket's name and every key and value in it, the
    /// main revision of the key bucket's last key, the number of entries in
    /// all buckets, and the pages in use times the page size.
    public static func status(of database: BoltFile) throws(BoltError) -> SnapshotRestore.Status {
        var crc: UInt32 = 0
        var revision: Int64 = 0
        var entries = 0
        let keyBucket = Array("key".utf8)
        var warnings: [String] = []
        try database.forEachBucket { (name, key, value) throws(BoltError) in
            guard let key, let value else {
                crc = CRC32C.update(crc, database.bytes, range: name.indices)
                return
            }
            if name.elementsEqual("auth".utf8), key.elementsEqual("authEnabled".utf8), value.elementsEqual([1]) {
                warnings.append("the backup has etcd authentication enabled: its users, roles and permissions are not restored")
            }
            crc = CRC32C.update(crc, database.bytes, range: key.indices)
            crc = CRC32C.update(crc, database.bytes, range: value.indices)
            if name.elementsEqual(keyBucket), key.count >= 8 {
                revision = Int64(bitPattern: key.prefix(8).reduce(0) { $0 << 8 | UInt64($1) })
            }
            entries += 1
        }
        return SnapshotRestore.Status(
            hash: crc, revision: revision, totalKeys: entries, totalSize: Int(database.pageCount) * database.pageSize,
            warnings: warnings)
    }

    /// go-humanize's `Bytes`, which etcdctl prints sizes with: SI units, one
    /// decimal below 10 ("4.1 kB", "20 kB", "1.2 MB").
    public static func humanized(_ bytes: Int) -> String {
        guard bytes >= 10 else { return "\(bytes) B" }
        let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
        var exponent = 0
        var scale = 1.0
        while exponent + 1 < units.count, Double(bytes) >= scale * 1000 {
            scale *= 1000
            exponent += 1
        }
        let value = (Double(bytes) / scale * 10 + 0.5).rounded(.down) / 10
        let text = value < 10 ? String(format: "%.1f", value) : String(format: "%.0f", value)
        return "\(text) \(units[exponent])"
    }
}
