import Bolt

// Reading a backup in etcd 3.4's format (a bbolt file `etcdctl snapshot save`
// wrote, from etcd or from Ensemble): the way a cluster moves from etcd to
// Ensemble (`ensemble snapshot restore`, docs/serve.md).

extension KVStateMachine {
    /// Replaces the state with an etcd backup's: every retained version from
    /// the `key` bucket, the compaction point from `meta`, the leases and
    /// alarms. The member directory is emptied (a restore names the new
    /// cluster's members, as `etcdctl snapshot restore` does). A compaction
    /// etcd scheduled but had not finished is finished here, as etcd does when
    /// it opens such a file. On error nothing changes.
    public func restore(etcdBackup file: BoltFile) throws(BoltError) {
        typealias R = EtcdBackupRecords
        var finished: Int64 = -1
        var scheduled: Int64 = -1
        try file.forEach(inBucket: R.metaBucket) { (key, value) throws(BoltError) in
            guard key.elementsEqual(R.finishedCompactKey) || key.elementsEqual(R.scheduledCompactKey) else { return }
            guard value.count == 17 else { throw BoltError("meta bucket: a \(value.count)-byte compaction revision") }
            let main = Int64(bitPattern: R.readBigEndian(value))
            if key.elementsEqual(R.finishedCompactKey) { finished = main } else { scheduled = main }
        }
        var histories: [[UInt8]: KeyHistory] = [:]
        var previous = Revision(main: 0, sub: -1)
        let hasKeys = try file.forEach(inBucket: R.keyBucket) { (key, value) throws(BoltError) in
            let tombstone = key.count == 18 && key.last == UInt8(ascii: "t")
            guard key.count == 17 || tombstone, key[key.startIndex + 8] == UInt8(ascii: "_") else {
                throw BoltError("key bucket: a \(key.count)-byte key is not a revision")
            }
            let revision = Revision(
                main: Int64(bitPattern: R.readBigEndian(key)), sub: Int64(bitPattern: R.readBigEndian(key.dropFirst(9))))
            guard revision.main >= 1, revision.sub >= 0, previous < revision else {
                throw BoltError("key bucket: revision \(revision.main)_\(revision.sub) out of order")
            }
            previous = revision
            guard let kv = R.decodeKeyValue(value), !kv.key.isEmpty else {
                throw BoltError("key bucket: revision \(revision.main)_\(revision.sub) does not hold a key-value")
            }
            if tombstone {
                // A deletion of a generation compaction removed says nothing,
                // unless it is at the compaction point (kept there for
                // watchers that start at it, as etcd 3.4.34 and Ensemble keep
                // it); a deletion of a deleted key is none (etcd ignores it).
                let history = histories[kv.key]
                if history?.latest != nil || (history == nil && revision.main == finished) {
                    histories[kv.key, default: KeyHistory()].versions.append(.init(revision: revision, kv: nil))
                }
                return
            }
            guard kv.modRevision == revision.main, kv.createRevision >= 1, kv.createRevision <= revision.main, kv.version >= 1
            else {
                throw BoltError("key bucket: revision \(revision.main)_\(revision.sub) holds an inconsistent key-value")
            }
            histories[kv.key, default: KeyHistory()].versions.append(.init(revision: revision, kv: kv))
        }
        guard hasKeys else { throw BoltError("no \"key\" bucket: not an etcd backup") }

        // etcd's current revision: the last version's, or the compaction
        // point when compaction removed it; 1 for an empty store.
        let revision = max(previous.main, finished, 1)
        guard finished <= revision else { throw BoltError("meta bucket: compaction at \(finished) past revision \(revision)") }

        var table = LeaseTable()
        table.minimumTTL = leases.minimumTTL
        try file.forEach(inBucket: R.leaseBucket) { (_, value) throws(BoltError) in
            guard let lease = R.decodeLease(value) else { throw BoltError("lease bucket: not a lease") }
            do {
                _ = try table.grant(id: lease.id, ttl: lease.ttl)
            } catch {
                throw BoltError("lease bucket: lease \(lease.id): \(error)")
            }
            table.checkpoint(id: lease.id, remainingTTL: lease.remainingTTL)
        }
        var raised: Set<Alarm> = []
        try file.forEach(inBucket: R.alarmBucket) { (key, _) throws(BoltError) in
            guard let alarm = R.decodeAlarmMember(key) else { throw BoltError("alarm bucket: not an alarm") }
            // etcd 3.4 knows no other kinds; a later one is not ours to keep.
            if let kind = Int32(exactly: alarm.kind).flatMap(Alarm.Kind.init(rawValue:)) {
                raised.insert(Alarm(member: alarm.member, kind: kind))
            }
        }

        var entries = histories.map { ($0.key, $0.value) }
        entries.sort { ByteKeyTree<Int>.compare($0.0, $1.0) < 0 }
        var live = 0
        for (key, history) in entries {
            guard let latest = history.latest else { continue }
            live += 1
            if latest.lease != 0 { table.attach(key, to: latest.lease) }
        }
        install(
            revision: revision, compacted: finished, live: live, entries: entries, leases: table, alarms: raised,
            members: MemberTable())
        if scheduled > max(finished, 0), scheduled <= revision { try? store.compact(scheduled) }
    }
}
