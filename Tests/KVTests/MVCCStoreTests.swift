import KV
import Testing

func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// etcd's observable behaviour, case by case.
@Suite struct MVCCStoreTests {
    @Test func revisionsVersionsAndGenerations() throws {
        let store = MVCCStore()
        #expect(store.revision == 1, "an empty etcd store is at revision 1")
        let (first, events) = try store.put(PutRequest(key: b("a"), value: b("1")))
        #expect(first.revision == 2)
        #expect(events.map(\.kind) == [.put])
        _ = try store.put(PutRequest(key: b("a"), value: b("2")))
        var kv = try #require(try store.range(RangeRequest(key: b("a"))).kvs.first)
        #expect(kv.createRevision == 2 && kv.modRevision == 3 && kv.version == 2 && kv.value == b("2"))
        let (deleted, deleteEvents) = try store.deleteRange(DeleteRangeRequest(key: b("a")))
        #expect(deleted.deleted == 1 && deleted.revision == 4)
        #expect(deleteEvents.first?.kind == .delete)
        #expect(deleteEvents.first?.kv.modRevision == 4)
        #expect(deleteEvents.first?.previous?.value == b("2"))
        _ = try store.put(PutRequest(key: b("a"), value: b("3")))
        kv = try #require(try store.range(RangeRequest(key: b("a"))).kvs.first)
        #expect(kv.createRevision == 5 && kv.version == 1, "a new generation")
        // History stays readable.
        var old = RangeRequest(key: b("a"))
        old.revision = 3
        #expect(try store.range(old).kvs.first?.value == b("2"))
        old.revision = 4
        #expect(try store.range(old).kvs.isEmpty)
    }

    /// As etcd's mvcc metrics count: a range per range op (txn ones too), a
    /// delete per DeleteRange, a txn only when it runs more than one op.
    @Test func operationsAreCountedAsEtcdCountsThem() throws {
        let store = MVCCStore()
        _ = try store.put(PutRequest(key: b("a"), value: b("1")))
        _ = try store.put(PutRequest(key: b("b"), value: b("1")))
        _ = try store.range(RangeRequest(key: b("a")))
        _ = try store.deleteRange(DeleteRangeRequest(key: b("a"), rangeEnd: b("c")))
        _ = try store.txn(TxnRequest(success: [.put(PutRequest(key: b("c"), value: b("2")))]))
        _ = try store.txn(TxnRequest(success: [.put(PutRequest(key: b("d"), value: b("2"))), .range(RangeRequest(key: b("c")))]))
        let counts = store.operations
        #expect(counts.puts == 4 && counts.ranges == 2 && counts.deletes == 1 && counts.txns == 1)
        var earlier = counts
        earlier.puts = 1
        #expect(counts.since(earlier).puts == 3 && counts.since(earlier).ranges == 0)
        #expect(MVCCStore.OperationCounts().since(counts) == MVCCStore.OperationCounts(), "another store: all of it")
    }

    @Test func deletingNothingKeepsTheRevision() throws {
        let store = MVCCStore()
        let (response, events) = try store.deleteRange(DeleteRangeRequest(key: b("missing")))
        #expect(response.deleted == 0 && response.revision == 1 && events.isEmpty)
    }

    @Test func rangesPrefixesAndFromKey() throws {
        let store = MVCCStore()
        for key in ["a", "ab", "abc", "b", "c"] { _ = try store.put(PutRequest(key: b(key), value: b(key))) }
        let prefix = try store.range(RangeRequest(key: b("a"), rangeEnd: b("b")))
        #expect(prefix.kvs.map(\.key) == ["a", "ab", "abc"].map(b))
        let fromKey = try store.range(RangeRequest(key: b("ab"), rangeEnd: [0]))
        #expect(fromKey.kvs.map(\.key) == ["ab", "abc", "b", "c"].map(b))
        let all = try store.range(RangeRequest(key: [0], rangeEnd: [0]))
        #expect(all.count == 5)
        let inverted = try store.range(RangeRequest(key: b("c"), rangeEnd: b("a")))
        #expect(inverted.kvs.isEmpty && inverted.count == 0)
    }

    @Test func limitMoreAndCount() throws {
        let store = MVCCStore()
        for i in 0..<10 { _ = try store.put(PutRequest(key: b("k\(i)"), value: b("\(i)"))) }
        var request = RangeRequest(key: b("k"), rangeEnd: b("l"))
        request.limit = 3
        let response = try store.range(request)
        #expect(response.kvs.count == 3 && response.more && response.count == 10)
        request.limit = 10
        #expect(try !store.range(request).more)
        request.countOnly = true
        let counted = try store.range(request)
        #expect(counted.kvs.isEmpty && counted.count == 10)
    }

    @Test func sortingKeysOnlyAndFilters() throws {
        let store = MVCCStore()
        _ = try store.put(PutRequest(key: b("x"), value: b("3")))
        _ = try store.put(PutRequest(key: b("y"), value: b("1")))
        _ = try store.put(PutRequest(key: b("z"), value: b("2")))
        _ = try store.put(PutRequest(key: b("x"), value: b("4")))
        var request = RangeRequest(key: b("x"), rangeEnd: b("{"))
        request.sortOrder = .descend
        #expect(try store.range(request).kvs.map(\.key) == ["z", "y", "x"].map(b))
        request.sortTarget = .value
        #expect(try store.range(request).kvs.map(\.value) == ["4", "2", "1"].map(b))
        request.sortOrder = .none  // a non-key target sorts ascending by default
        #expect(try store.range(request).kvs.map(\.value) == ["1", "2", "4"].map(b))
        request.sortTarget = .mod
        request.sortOrder = .descend
        request.limit = 1
        let newest = try store.range(request)
        #expect(newest.kvs.map(\.key) == [b("x")] && newest.more)
        var filtered = RangeRequest(key: b("x"), rangeEnd: b("{"))
        filtered.minModRevision = 4
        filtered.keysOnly = true
        let response = try store.range(filtered)
        #expect(response.kvs.map(\.key) == ["x", "z"].map(b))
        #expect(response.kvs.allSatisfy { $0.value.isEmpty })
        #expect(response.count == 3, "count is before filters")
    }

    @Test func putOptionsAndErrors() throws {
        let store = MVCCStore()
        #expect(throws: KVError.emptyKey) { try store.put(PutRequest(key: [], value: b("v"))) }
        var ignore = PutRequest(key: b("k"), value: [])
        ignore.ignoreValue = true
        #expect(throws: KVError.keyNotFound) { try store.put(ignore) }
        store.leaseExists = { $0 == 7 }
        #expect(throws: KVError.leaseNotFound) { try store.put(PutRequest(key: b("k"), value: b("v"), lease: 8)) }
        _ = try store.put(PutRequest(key: b("k"), value: b("v"), lease: 7))
        var keepLease = PutRequest(key: b("k"), value: b("w"))
        keepLease.ignoreLease = true
        keepLease.prevKV = true
        let (response, _) = try store.put(keepLease)
        #expect(response.previous?.value == b("v"))
        let kv = try #require(try store.range(RangeRequest(key: b("k"))).kvs.first)
        #expect(kv.lease == 7 && kv.value == b("w"))
        _ = try store.put(ignore)
        #expect(try store.range(RangeRequest(key: b("k"))).kvs.first?.value == b("w"))
        #expect(KVError.compacted.description == "etcdserver: mvcc: required revision has been compacted")
    }

    @Test func txnComparesAndBranches() throws {
        let store = MVCCStore()
        // Create-if-absent: version == 0 holds for a missing key.
        let create = TxnRequest(
            compare: [Compare(key: b("lock"), .version(0), .equal)],
            success: [.put(PutRequest(key: b("lock"), value: b("me")))],
            failure: [.range(RangeRequest(key: b("lock")))])
        let (first, events) = try store.txn(create)
        #expect(first.succeeded && events.count == 1 && first.revision == 2)
        let (second, none) = try store.txn(create)
        #expect(!second.succeeded && none.isEmpty && second.revision == 2)
        guard case let .range(held)? = second.responses.first else { Issue.record("expected a range"); return }
        #expect(held.kvs.first?.value == b("me"))
        // A value comparison on a missing key always fails.
        let missing = TxnRequest(compare: [Compare(key: b("nope"), .value([]), .equal)])
        #expect(try !store.txn(missing).0.succeeded)
        // Compare over a range: all keys must satisfy it.
        _ = try store.put(PutRequest(key: b("r1"), value: b("x")))
        _ = try store.put(PutRequest(key: b("r2"), value: b("y")))
        let allX = TxnRequest(compare: [Compare(key: b("r"), rangeEnd: b("s"), .value(b("x")), .equal)])
        #expect(try !store.txn(allX).0.succeeded)
    }

    @Test func txnIsOneRevisionAndReadsItsOwnWrites() throws {
        let store = MVCCStore()
        let txn = TxnRequest(success: [
            .put(PutRequest(key: b("a"), value: b("1"))),
            .put(PutRequest(key: b("b"), value: b("2"))),
            .range(RangeRequest(key: b("a"), rangeEnd: b("c"))),
        ])
        let (response, events) = try store.txn(txn)
        #expect(response.revision == 2 && events.count == 2)
        #expect(events.allSatisfy { $0.kv.modRevision == 2 })
        guard case let .range(read)? = response.responses.last else { Issue.record("expected a range"); return }
        #expect(read.kvs.count == 2)
        // Reads only: no new revision.
        let (readOnly, noEvents) = try store.txn(TxnRequest(success: [.range(RangeRequest(key: b("a")))]))
        #expect(readOnly.revision == 2 && noEvents.isEmpty)
    }

    @Test func txnValidation() throws {
        let store = MVCCStore()
        let twice = TxnRequest(success: [.put(PutRequest(key: b("k"), value: [])), .put(PutRequest(key: b("k"), value: []))])
        #expect(throws: KVError.duplicateKeyInTxn) { try store.txn(twice) }
        let putInDelete = TxnRequest(success: [.deleteRange(DeleteRangeRequest(key: b("a"), rangeEnd: b("z"))), .put(PutRequest(key: b("k"), value: []))])
        #expect(throws: KVError.duplicateKeyInTxn) { try store.txn(putInDelete) }
        let branches = TxnRequest(success: [.txn(TxnRequest(
            success: [.put(PutRequest(key: b("k"), value: []))], failure: [.put(PutRequest(key: b("k"), value: []))]))])
        _ = try store.txn(branches)  // exclusive branches may put the same key
        let tooMany = TxnRequest(success: Array(repeating: .range(RangeRequest(key: b("k"))), count: 129))
        #expect(throws: KVError.tooManyOperations) { try store.txn(tooMany) }
        // A failing check leaves no trace.
        store.leaseExists = { _ in false }
        let before = store.revision
        let badLease = TxnRequest(success: [.put(PutRequest(key: b("x"), value: [])), .put(PutRequest(key: b("y"), value: [], lease: 5))])
        #expect(throws: KVError.leaseNotFound) { try store.txn(badLease) }
        #expect(store.revision == before)
        #expect(try store.range(RangeRequest(key: b("x"))).kvs.isEmpty)
    }

    @Test func compaction() throws {
        let store = MVCCStore()
        _ = try store.put(PutRequest(key: b("a"), value: b("1")))  // 2
        _ = try store.put(PutRequest(key: b("a"), value: b("2")))  // 3
        _ = try store.put(PutRequest(key: b("gone"), value: b("x")))  // 4
        _ = try store.deleteRange(DeleteRangeRequest(key: b("gone")))  // 5
        try store.compact(4)
        var read = RangeRequest(key: b("a"))
        read.revision = 3
        #expect(throws: KVError.compacted) { try store.range(read) }
        read.revision = 4
        #expect(try store.range(read).kvs.first?.value == b("2"), "the version visible at the compaction point stays")
        #expect(throws: KVError.compacted) { try store.compact(4) }
        #expect(throws: KVError.futureRevision) { try store.compact(9) }
        read.revision = 9
        #expect(throws: KVError.futureRevision) { try store.range(read) }
        try store.compact(5)
        #expect(store.keyCount == 2, "a tombstone at the compaction revision stays, for watches from there")
        _ = try store.put(PutRequest(key: b("a"), value: b("3")))  // 6
        try store.compact(6)
        #expect(store.keyCount == 1, "the deleted key left the index")
    }
}
