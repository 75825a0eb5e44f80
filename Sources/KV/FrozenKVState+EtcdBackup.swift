import Bolt

// A backup in etcd 3.4's format: the bbolt database etcd's Snapshot call
// streams, so `etcdctl snapshot status` reads it and `etcdctl snapshot
// restore` turns it into an etcd member (docs/serve.md, "Backup and restore").

extension FrozenKVState {
    /// The state laid out as etcd's backend holds it:
    /// - `key`: every retained version by revision (etcd's revision key, a
    ///   `mvccpb.KeyValue`; a deletion is a tombstone key holding only the key),
    /// - `meta`: `consistent_index`, and the compaction point as
    ///   `finishedCompactRev` and `scheduledCompactRev`,
    /// - `lease`: `leasepb.Lease` by big-endian id (the checkpointed
    ///   remaining TTL as `RemainingTTL`),
    /// - `alarm`, `members`, `members_removed`, `cluster` (`clusterVersion`
    ///   3.4.0) and the auth buckets of a store without auth.
    ///
    /// Plans the file at once (one pass over the index, and a sort of every
    /// retained version by revision: about 32 bytes per version and 40 per
    /// page while the backup is sent); the values are read while writing.
    public func etcdBackup(consistentIndex: UInt64) -> BoltWriter {
        typealias R = EtcdBackupRecords
        var keys: [[UInt8]] = []
        var histories: [KeyHistory] = []
        keys.reserveCapacity(index.count)
        histories.reserveCapacity(index.count)
        index.scan(from: [], to: nil) { key, history in
            keys.append(key)
            histories.append(history)
            return true
        }
        // Every retained version, in revision order: etcd's key bucket order.
        // 32 bytes per retained version: the plan's main cost.
        var versions: [(revision: Revision, key: Int, version: Int)] = []
        versions.reserveCapacity(histories.reduce(0) { $0 + $1.versions.count })
        for (k, history) in histories.enumerated() {
            for (v, version) in history.versions.enumerated() { versions.append((version.revision, k, v)) }
        }
        versions.sort { $0.revision < $1.revision }
        func version(_ i: Int) -> ([UInt8], KeyHistory.Version) {
            let ref = versions[i]
            return (keys[ref.key], histories[ref.key].versions[ref.version])
        }
        let keyBucket = BoltBucketSource(
            name: R.keyBucket, count: versions.count,
            key: { i in
                let (_, v) = version(i)
                return R.revisionKey(v.revision, tombstone: v.isTombstone)
            },
            valueCount: { i in
                let (key, v) = version(i)
                guard !v.isTombstone, let kv = v.kv(key: key, value: false) else {
                    return R.keyValueCount(key: key.count, createRevision: 0, modRevision: 0, version: 0, value: 0, lease: 0)
                }
                return R.keyValueCount(
                    key: key.count, createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version,
                    value: v.valueCount, lease: kv.lease)
            },
            value: { i in
                let (key, v) = version(i)
                let kv = v.kv(key: key) ?? KeyValue(key: key, createRevision: 0, modRevision: 0, version: 0, value: [], lease: 0)
                return R.keyValue(kv)
            })

        var meta: [([UInt8], [UInt8])] = [(R.consistentIndexKey, R.bigEndian(consistentIndex))]
        if compacted > 0 {
            let point = R.revisionKey(Revision(main: compacted, sub: 0), tombstone: false)
            meta += [(R.finishedCompactKey, point), (R.scheduledCompactKey, point)]
        }
        let leaseEntries = leases.ids.compactMap { id -> ([UInt8], [UInt8])? in
            guard let lease = leases.leases[id] else { return nil }
            return (
                R.bigEndian(UInt64(bitPattern: id)),
                R.lease(id: id, ttl: lease.grantedTTL, remainingTTL: lease.checkpointTTL)
            )
        }
        let memberEntries = members.sorted.map { (Array(String($0.id, radix: 16).utf8), R.memberJSON($0)) }
        let removedEntries = members.removed.map { (Array(String($0, radix: 16).utf8), Array("removed".utf8)) }
        return BoltWriter(buckets: [
            keyBucket,
            BoltBucketSource(name: R.metaBucket, entries: meta),
            BoltBucketSource(name: R.leaseBucket, entries: leaseEntries),
            BoltBucketSource(name: R.alarmBucket, entries: alarms.map { (R.alarmMember($0), []) }),
            BoltBucketSource(name: R.clusterBucket, entries: [(Array("clusterVersion".utf8), Array("3.4.0".utf8))]),
            BoltBucketSource(name: R.membersBucket, entries: memberEntries),
            BoltBucketSource(name: R.removedMembersBucket, entries: removedEntries),
            BoltBucketSource(name: R.authBucket, entries: [(Array("authRevision".utf8), R.bigEndian(1))]),
            BoltBucketSource(name: R.authUsersBucket, entries: []),
            BoltBucketSource(name: R.authRolesBucket, entries: []),
        ])
    }
}
