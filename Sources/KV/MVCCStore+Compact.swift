// Compaction (etcd's Compact): forget history below a revision.

extension MVCCStore {
    /// Discards every version that no read at or after `target` can see. Reads
    /// below `target` then fail with ``KVError/compacted``.
    public func compact(_ target: Int64) throws(KVError) {
        if target <= compactedRevision { throw .compacted }
        if target > revision { throw .futureRevision }
        compactedRevision = target
        var freed = 0
        index.filter { key, history in
            var history = history
            let before = history.size(key: key)
            let keep = history.compact(upTo: target)
            freed += before - history.size(key: key)
            return keep ? history : nil
        }
        approximateBytes -= freed
        changes.trim(below: target)
    }
}
