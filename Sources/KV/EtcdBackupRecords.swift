// The records etcd 3.4 keeps in its backend's buckets, encoded as etcd encodes
// them (gogo protobuf in field order, zero fields omitted; members as JSON):
// what a backup written for `etcdctl snapshot status|restore` must hold, and
// what a backup etcd wrote holds.

enum EtcdBackupRecords {
    /// Bucket names (etcd's mvcc, lease, alarm, membership and auth stores).
    static let keyBucket = Array("key".utf8)
    static let metaBucket = Array("meta".utf8)
    static let leaseBucket = Array("lease".utf8)
    static let alarmBucket = Array("alarm".utf8)
    static let clusterBucket = Array("cluster".utf8)
    static let membersBucket = Array("members".utf8)
    static let removedMembersBucket = Array("members_removed".utf8)
    static let authBucket = Array("auth".utf8)
    static let authUsersBucket = Array("authUsers".utf8)
    static let authRolesBucket = Array("authRoles".utf8)

    static let consistentIndexKey = Array("consistent_index".utf8)
    static let finishedCompactKey = Array("finishedCompactRev".utf8)
    static let scheduledCompactKey = Array("scheduledCompactRev".utf8)

    /// etcd's revision key: main and sub big-endian around '_', and a 't'
    /// after it for a tombstone (17 or 18 bytes).
    static func revisionKey(_ revision: Revision, tombstone: Bool) -> [UInt8] {
        var key = bigEndian(UInt64(bitPattern: revision.main))
        key.append(UInt8(ascii: "_"))
        key += bigEndian(UInt64(bitPattern: revision.sub))
        if tombstone { key.append(UInt8(ascii: "t")) }
        return key
    }

    static func bigEndian(_ value: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) }
    }

    static func readBigEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    // MARK: Protobuf

    static func varintCount(_ value: UInt64) -> Int {
        var value = value
        var n = 1
        while value >= 0x80 {
            value >>= 7
            n += 1
        }
        return n
    }

    static func varintFieldCount(_ value: Int64) -> Int { value == 0 ? 0 : 1 + varintCount(UInt64(bitPattern: value)) }
    static func bytesFieldCount(_ count: Int) -> Int { count == 0 ? 0 : 1 + varintCount(UInt64(count)) + count }

    static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
    }

    static func appendVarintField(_ field: UInt8, _ value: Int64, to out: inout [UInt8]) {
        guard value != 0 else { return }
        out.append(field << 3)
        appendVarint(UInt64(bitPattern: value), to: &out)
    }

    static func appendBytesField(_ field: UInt8, _ bytes: [UInt8], to out: inout [UInt8]) {
        guard !bytes.isEmpty else { return }
        out.append(field << 3 | 2)
        appendVarint(UInt64(bytes.count), to: &out)
        out += bytes
    }

    /// The size of an `mvccpb.KeyValue` (a tombstone's holds only the key).
    static func keyValueCount(key: Int, createRevision: Int64, modRevision: Int64, version: Int64, value: Int, lease: Int64) -> Int {
        bytesFieldCount(key) + varintFieldCount(createRevision) + varintFieldCount(modRevision) + varintFieldCount(version)
            + bytesFieldCount(value) + varintFieldCount(lease)
    }

    static func keyValue(_ kv: KeyValue) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(kv.key.count + kv.value.count + 40)
        appendBytesField(1, kv.key, to: &out)
        appendVarintField(2, kv.createRevision, to: &out)
        appendVarintField(3, kv.modRevision, to: &out)
        appendVarintField(4, kv.version, to: &out)
        appendBytesField(5, kv.value, to: &out)
        appendVarintField(6, kv.lease, to: &out)
        return out
    }

    /// An `mvccpb.KeyValue`'s fields (unknown ones skipped), or nil when the
    /// bytes are not a well-formed message.
    static func decodeKeyValue(_ bytes: ArraySlice<UInt8>) -> KeyValue? {
        var kv = KeyValue(key: [], createRevision: 0, modRevision: 0, version: 0, value: [], lease: 0)
        let complete = decodeFields(bytes) { field, varint, data in
            switch (field, data) {
            case (1, let data?): kv.key = Array(data)
            case (2, nil): kv.createRevision = Int64(bitPattern: varint)
            case (3, nil): kv.modRevision = Int64(bitPattern: varint)
            case (4, nil): kv.version = Int64(bitPattern: varint)
            case (5, let data?): kv.value = Array(data)
            case (6, nil): kv.lease = Int64(bitPattern: varint)
            default: break
            }
        }
        return complete ? kv : nil
    }

    /// `leasepb.Lease`: ID, TTL, RemainingTTL.
    static func lease(id: Int64, ttl: Int64, remainingTTL: Int64) -> [UInt8] {
        var out: [UInt8] = []
        appendVarintField(1, id, to: &out)
        appendVarintField(2, ttl, to: &out)
        appendVarintField(3, remainingTTL, to: &out)
        return out
    }

    static func decodeLease(_ bytes: ArraySlice<UInt8>) -> (id: Int64, ttl: Int64, remainingTTL: Int64)? {
        var lease: (id: Int64, ttl: Int64, remainingTTL: Int64) = (0, 0, 0)
        let complete = decodeFields(bytes) { field, varint, data in
            guard data == nil else { return }
            switch field {
            case 1: lease.id = Int64(bitPattern: varint)
            case 2: lease.ttl = Int64(bitPattern: varint)
            case 3: lease.remainingTTL = Int64(bitPattern: varint)
            default: break
            }
        }
        return complete ? lease : nil
    }

    /// `etcdserverpb.AlarmMember`: MemberID, Alarm.
    static func alarmMember(_ alarm: Alarm) -> [UInt8] {
        var out: [UInt8] = []
        appendVarintField(1, Int64(bitPattern: alarm.member), to: &out)
        appendVarintField(2, Int64(alarm.kind.rawValue), to: &out)
        return out
    }

    static func decodeAlarmMember(_ bytes: ArraySlice<UInt8>) -> (member: UInt64, kind: Int64)? {
        var alarm: (member: UInt64, kind: Int64) = (0, 0)
        let complete = decodeFields(bytes) { field, varint, data in
            guard data == nil else { return }
            if field == 1 { alarm.member = varint } else if field == 2 { alarm.kind = Int64(bitPattern: varint) }
        }
        return complete ? alarm : nil
    }

    /// Walks a protobuf message: `body(field, varint, bytes)` for varint
    /// (bytes nil) and length-delimited fields; fixed-width ones are skipped.
    /// False on a truncated or malformed message.
    static func decodeFields(_ bytes: ArraySlice<UInt8>, _ body: (UInt64, UInt64, ArraySlice<UInt8>?) -> Void) -> Bool {
        var i = bytes.startIndex
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while i < bytes.endIndex, shift < 64 {
                let byte = bytes[i]
                i += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
            return nil
        }
        while i < bytes.endIndex {
            guard let tag = varint() else { return false }
            switch tag & 7 {
            case 0:
                guard let value = varint() else { return false }
                body(tag >> 3, value, nil)
            case 1, 5:
                let width = tag & 7 == 1 ? 8 : 4
                guard bytes.endIndex - i >= width else { return false }
                i += width
            case 2:
                guard let count = varint(), count <= UInt64(bytes.endIndex - i) else { return false }
                body(tag >> 3, 0, bytes[i..<(i + Int(count))])
                i += Int(count)
            default:
                return false
            }
        }
        return true
    }

    // MARK: Members

    /// etcd's `membership.Member` as its backend stores it (JSON).
    static func memberJSON(_ member: Member) -> [UInt8] {
        func strings(_ values: [String]) -> String { "[" + values.map(jsonString).joined(separator: ",") + "]" }
        var json = "{\"id\":\(member.id),\"peerURLs\":\(strings(member.peerURLs))"
        if member.isLearner { json += ",\"isLearner\":true" }
        if !member.name.isEmpty { json += ",\"name\":\(jsonString(member.name))" }
        if !member.clientURLs.isEmpty { json += ",\"clientURLs\":\(strings(member.clientURLs))" }
        return Array((json + "}").utf8)
    }

    static func jsonString(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
