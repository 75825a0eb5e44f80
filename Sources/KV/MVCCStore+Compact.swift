// Compaction (etcd's Compact): forget history below a revision.

extension MVCCStore {
    /// Discards every version that no read at or after `target` can see. Reads
    /// below `target` then fail with ``KVError/compacted``.
    public func compact(_ target: Int64) throws(KVError) {
        if target <= compactedRevision { throw .compacted }
        if target > revision { throw .futureRevision }
        compactedRevision = target
        index.filter { _, history in
            var history = history
            return history.compact(upTo: target) ? history : nil
        }
    }
}
