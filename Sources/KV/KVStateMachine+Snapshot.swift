// The whole state as bytes (for Raft snapshots and restarts), and the hash
// members compare to check they agree (etcd's Hash/HashKV).

extension KVStateMachine {
    static let snapshotMagic: [UInt8] = Array("ENKV".utf8)
    /// 2 added the alarms, 3 the member directory; older snapshots still restore.
    static let snapshotVersion: UInt8 = 3

    /// Encodes revision, compaction point, leases, every key's retained
    /// history and the alarms. Format: `ENKV | version u8 | revision | compacted
    /// | leases | keys | alarms`, integers little-endian (see docs/kv.md).
    public func snapshot() -> [UInt8] { freeze().encode() }

    /// The state now, frozen in O(1) (the key index is shared copy-on-write):
    /// call on the apply thread, encode on any.
    public func freeze() -> FrozenKVState {
        FrozenKVState(
            revision: store.revision, compacted: store.compactedRevision, leases: leases,
            index: store.index.frozenCopy(), alarms: alarms, members: members)
    }

    /// Replaces the whole state with a snapshot's. On error nothing changes.
    public func restore(_ bytes: [UInt8]) throws(SnapshotDecodeError) {
        var r = SnapshotReader(bytes)
        try r.need(4, "magic")
        guard Array(bytes[0..<4]) == Self.snapshotMagic else {
            throw SnapshotDecodeError(reason: "not a KV snapshot", offset: 0)
        }
        r.position = 4
        let version = try r.u8("version")
        guard version >= 1 && version <= Self.snapshotVersion else {
            throw SnapshotDecodeError(reason: "unsupported version \(version)", offset: 4)
        }
        let revision = try r.i64("revision")
        let compacted = try r.i64("compacted revision")
        // -1: never compacted (a fresh store), which snapshots must carry too.
        guard revision >= 1, compacted >= -1, compacted <= revision else {
            throw SnapshotDecodeError(reason: "revision \(revision) / compacted \(compacted) inconsistent", offset: 5)
        }
        var table = LeaseTable()
        table.minimumTTL = leases.minimumTTL
        let leaseCount = try r.count("lease count", elementSize: 24)
        var checkpoints: [(LeaseID, Int64)] = []
        for _ in 0..<leaseCount {
            let id = try r.i64("lease id")
            let granted = try r.i64("lease ttl")
            let checkpoint = try r.i64("lease checkpoint")
            do {
                _ = try table.grant(id: id, ttl: granted)
            } catch {
                throw SnapshotDecodeError(reason: "lease \(id): \(error)", offset: r.position)
            }
            checkpoints.append((id, checkpoint))
        }
        for (id, ttl) in checkpoints { table.checkpoint(id: id, remainingTTL: ttl) }
        let keyCount = try r.count("key count", elementSize: 16)
        var entries: [([UInt8], KeyHistory)] = []
        entries.reserveCapacity(keyCount)
        var previousKey: [UInt8]?
        var live = 0
        for _ in 0..<keyCount {
            let key = try r.blob("key")
            if let previousKey, ByteKeyTree<Int>.compare(previousKey, key) >= 0 {
                throw SnapshotDecodeError(reason: "keys out of order", offset: r.position)
            }
            previousKey = key
            let versionCount = try r.count("version count", elementSize: 17)
            var history = KeyHistory()
            // A count is only a claim until its versions are read: reserve a little.
            history.versions.reserveCapacity(min(versionCount, 64))
            for _ in 0..<versionCount {
                let main = try r.i64("revision")
                let sub = try r.i64("sub revision")
                let revisionOf = Revision(main: main, sub: sub)
                if let last = history.versions.last, !(last.revision < revisionOf) {
                    throw SnapshotDecodeError(reason: "versions out of order", offset: r.position)
                }
                guard main <= revision else {
                    throw SnapshotDecodeError(reason: "version beyond the store revision", offset: r.position)
                }
                switch try r.u8("version kind") {
                case 0:
                    history.versions.append(.init(revision: revisionOf, kv: nil))
                case 1:
                    let create = try r.i64("create revision")
                    let count = try r.i64("version")
                    let lease = try r.i64("lease")
                    let value = try r.blob("value")
                    let kv = KeyValue(key: key, createRevision: create, modRevision: main, version: count, value: value, lease: lease)
                    history.versions.append(.init(revision: revisionOf, kv: kv))
                default:
                    throw SnapshotDecodeError(reason: "unknown version kind", offset: r.position - 1)
                }
            }
            if let latest = history.latest {
                live += 1
                if latest.lease != 0 { table.attach(key, to: latest.lease) }
            }
            entries.append((key, history))
        }
        var raised: Set<Alarm> = []
        if version >= 2 {
            let alarmCount = try r.count("alarm count", elementSize: 16)
            for _ in 0..<alarmCount {
                let member = UInt64(bitPattern: try r.i64("alarm member"))
                let kind = try r.i64("alarm kind")
                guard let known = Int32(exactly: kind).flatMap(Alarm.Kind.init(rawValue:)) else {
                    throw SnapshotDecodeError(reason: "unknown alarm \(kind)", offset: r.position - 8)
                }
                raised.insert(Alarm(member: member, kind: known))
            }
        }
        var directory = MemberTable()
        if version >= 3 {
            directory.clusterID = try r.u64("cluster id")
            let memberCount = try r.count("member count", elementSize: 33)
            for _ in 0..<memberCount {
                let id = try r.u64("member id")
                let name = String(decoding: try r.blob("member name"), as: UTF8.self)
                var peers: [String] = []
                for _ in 0..<(try r.count("peer URL count", elementSize: 8)) {
                    peers.append(String(decoding: try r.blob("peer URL"), as: UTF8.self))
                }
                var clients: [String] = []
                for _ in 0..<(try r.count("client URL count", elementSize: 8)) {
                    clients.append(String(decoding: try r.blob("client URL"), as: UTF8.self))
                }
                let learner = try r.u8("learner flag") == 1
                directory.members[id] = Member(id: id, name: name, peerURLs: peers, clientURLs: clients, isLearner: learner)
            }
            for _ in 0..<(try r.count("removed count", elementSize: 8)) {
                directory.removed.insert(try r.u64("removed id"))
            }
        }
        guard r.isAtEnd else { throw SnapshotDecodeError(reason: "trailing bytes", offset: r.position) }
        // A snapshot from before the directory was kept in it (version < 3,
        // an older leader's) says nothing about members: keep ours.
        install(
            revision: revision, compacted: compacted, live: live, entries: entries, leases: table, alarms: raised,
            members: version >= 3 ? directory : members)
    }

    /// Replaces the state with one decoded completely (a snapshot's, a backup's).
    func install(
        revision: Int64, compacted: Int64, live: Int, entries: [([UInt8], KeyHistory)], leases: LeaseTable,
        alarms: Set<Alarm>, members: MemberTable
    ) {
        var entries = entries
        if let log = store.historyValues {
            for i in entries.indices { entries[i].1.spillAllButLatest(into: log) }
        }
        store.replace(revision: revision, compacted: compacted, live: live, entries: entries)
        self.leases = leases
        self.alarms = alarms
        self.members = members
    }

    /// Replaces the member directory with a new cluster's (a snapshot restored
    /// into new members, as `etcdctl snapshot restore` does): the keys, their
    /// history, leases and alarms stay.
    public func replaceMembers(clusterID: UInt64, with members: [Member]) {
        var directory = MemberTable()
        directory.clusterID = clusterID
        for member in members { directory.members[member.id] = member }
        self.members = directory
    }

    /// Forgets every lease's checkpointed remaining TTL, so each counts down
    /// its whole granted TTL again (a restored backup: etcd 3.4 does not keep
    /// checkpoints either, and the clients need time to find the new cluster).
    public func forgetLeaseCheckpoints() {
        for id in leases.ids { leases.checkpoint(id: id, remainingTTL: 0) }
    }

    /// A hash of every retained version at or below `revision` (0: the
    /// current one) — compaction keeps the same versions on every member —
    /// plus both revisions (etcd's HashKV). Members with the same history
    /// report the same hash. Reads every retained value: for a large
    /// history, hash a ``freeze()``d copy off the apply thread.
    ///
    /// Keys and values are mixed in without their lengths, so two states that
    /// differ only in where a value ends and the next key begins hash alike
    /// (review finding). Left so: members of different versions compare
    /// hashes (the corruption check), and a new hash during a rolling
    /// upgrade would raise a false CORRUPT alarm.
    public func hashKV(revision: Int64 = 0) throws(KVError) -> (hash: UInt32, revision: Int64, compactRevision: Int64) {
        try freeze().hashKV(revision: revision)
    }
}

extension MVCCStore {
    /// Installs decoded state (from a snapshot).
    func replace(revision: Int64, compacted: Int64, live: Int, entries: [([UInt8], KeyHistory)]) {
        index.replaceAll(entries)
        changes = ChangeLog(histories: entries, compacted: compacted)
        self.revision = revision
        self.compactedRevision = compacted
        self.liveKeys = live
        approximateBytes = entries.reduce(0) { total, entry in
            entry.1.versions.reduce(total) { $0 + KeyHistory.size(key: entry.0, valueCount: $1.valueCount) }
        }
    }
}

/// The whole KV state at one moment (``KVStateMachine/freeze()``), to be
/// encoded as a snapshot off the apply thread. Sendable by construction: the
/// value fields are copies, and the key index is a frozen copy that no one
/// mutates (the live tree copies shared nodes before changing them).
public struct FrozenKVState: @unchecked Sendable {
    let revision: Int64
    let compacted: Int64
    let leases: LeaseTable
    let index: ByteKeyTree<KeyHistory>
    let alarms: Set<Alarm>
    let members: MemberTable

    /// ``KVStateMachine/hashKV(revision:)`` of this state.
    public func hashKV(revision: Int64 = 0) throws(KVError) -> (hash: UInt32, revision: Int64, compactRevision: Int64) {
        // etcd's HashByRev: 0 is the current revision; a negative one hashes
        // no version at all (none is at or below it), without an error.
        let at = revision == 0 ? self.revision : revision
        if at > self.revision { throw .futureRevision }
        // A revision asked for at or below the compaction is gone.
        if revision > 0 ? at <= compacted : revision == 0 && at < compacted { throw .compacted }
        var h: UInt32 = 2_166_136_261
        func mix(_ bytes: [UInt8]) {
            for byte in bytes { h = (h ^ UInt32(byte)) &* 16_777_619 }
        }
        func mix(_ v: Int64) {
            var x = UInt64(bitPattern: v)
            for _ in 0..<8 {
                h = (h ^ UInt32(x & 0xFF)) &* 16_777_619
                x >>= 8
            }
        }
        index.scan(from: [], to: nil) { key, history in
            for version in history.versions where version.revision.main <= at {
                mix(key)
                mix(version.revision.main)
                mix(version.revision.sub)
                if let kv = version.kv(key: key) {
                    mix(kv.createRevision)
                    mix(kv.version)
                    mix(kv.lease)
                    mix(kv.value)
                } else {
                    mix(-1)
                }
            }
            return true
        }
        return (h, self.revision, compacted)
    }

    /// The snapshot bytes (``KVStateMachine/snapshot()``'s format).
    public func encode() -> [UInt8] {
        var w = SnapshotWriter()
        write(to: &w)
        return w.bytes
    }

    /// How many bytes ``encode()`` produces, without producing them (one scan
    /// of the key index).
    public func encodedCount() -> Int {
        var w = SnapshotWriter(counting: ())
        write(to: &w)
        return w.count
    }

    /// The same bytes as ``encode()``, handed to `sink` in chunks of about
    /// `chunk` bytes; `sink` returns false to stop. Returns whether every
    /// chunk was taken.
    public func encode(chunk: Int, _ sink: @escaping ([UInt8]) -> Bool) -> Bool {
        var w = SnapshotWriter(chunk: chunk, sink: sink)
        write(to: &w)
        w.flush()
        return !w.stopped
    }

    private func write(to w: inout SnapshotWriter) {
        w.raw(KVStateMachine.snapshotMagic)
        w.u8(KVStateMachine.snapshotVersion)
        w.i64(revision)
        w.i64(compacted)
        let ids = leases.ids
        w.u64(UInt64(ids.count))
        for id in ids {
            guard let lease = leases.leases[id] else { continue }
            w.i64(lease.id)
            w.i64(lease.grantedTTL)
            w.i64(lease.checkpointTTL)
        }
        w.u64(UInt64(index.count))
        index.scan(from: [], to: nil) { key, history in
            guard !w.stopped else { return false }
            w.blob(key)
            w.u64(UInt64(history.versions.count))
            for version in history.versions {
                w.i64(version.revision.main)
                w.i64(version.revision.sub)
                switch version.state {
                case let .value(kv):
                    w.u8(1)
                    w.i64(kv.createRevision)
                    w.i64(kv.version)
                    w.i64(kv.lease)
                    w.blob(kv.value)
                case let .spilled(spilled):
                    w.u8(1)
                    w.i64(spilled.createRevision)
                    w.i64(spilled.version)
                    w.i64(spilled.lease)
                    // Counting needs only the length: no read from the file.
                    if w.counting { w.blob(count: Int(spilled.value.count)) } else { w.blob(spilled.value.load()) }
                case .tombstone:
                    w.u8(0)
                }
            }
            return true
        }
        let raised = alarms.sorted()
        w.u64(UInt64(raised.count))
        for alarm in raised {
            w.u64(alarm.member)
            w.i64(Int64(alarm.kind.rawValue))
        }
        w.u64(members.clusterID)
        let directory = members.sorted
        w.u64(UInt64(directory.count))
        for member in directory {
            w.u64(member.id)
            w.blob(Array(member.name.utf8))
            w.u64(UInt64(member.peerURLs.count))
            for url in member.peerURLs { w.blob(Array(url.utf8)) }
            w.u64(UInt64(member.clientURLs.count))
            for url in member.clientURLs { w.blob(Array(url.utf8)) }
            w.u8(member.isLearner ? 1 : 0)
        }
        let removed = members.removed.sorted()
        w.u64(UInt64(removed.count))
        for id in removed { w.u64(id) }
    }
}
