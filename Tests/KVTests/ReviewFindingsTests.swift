@testable import KV
import Testing

/// etcd behaviours found in review, each checked against etcd v3.4's source.
@Suite struct ReviewFindingsTests {
    /// Nested compares are evaluated once, against the state before the txn
    /// (etcd's compareToPath), not after the txn's own earlier writes.
    /// A key put and deleted in one txn (a from-key delete conflicts with
    /// nothing in etcd's interval check): each event's prev_kv is the state
    /// before the txn, as etcd's watch reads it (a range at the revision
    /// before) — live and replayed alike.
    @Test func eventsOfOneTxnCarryTheStateBeforeIt() throws {
        let store = MVCCStore()
        _ = try store.put(PutRequest(key: b("k"), value: b("v1")))  // revision 2
        let putThenDelete = TxnRequest(success: [
            .put(PutRequest(key: b("k"), value: b("v2"))),
            .deleteRange(DeleteRangeRequest(key: b("k"), rangeEnd: [0])),
        ])
        let (_, live) = try store.txn(putThenDelete)  // revision 3
        let deleteThenPut = TxnRequest(success: [
            .deleteRange(DeleteRangeRequest(key: b("j"), rangeEnd: [0])),
            .put(PutRequest(key: b("j"), value: b("w"))),
        ])
        _ = try store.put(PutRequest(key: b("j"), value: b("w0")))  // revision 4
        let (_, live2) = try store.txn(deleteThenPut)  // revision 5
        #expect(live.map(\.kind) == [.put, .delete] && live.allSatisfy { $0.previous?.value == b("v1") })
        #expect(live2.map(\.kind) == [.delete, .put] && live2.allSatisfy { $0.previous?.value == b("w0") })
        let replayed = store.events(in: KeyRange(key: b("a"), rangeEnd: [0]), from: 3, through: 5)
        #expect(replayed.map(\.previous?.value) == [b("v1"), b("v1"), nil, b("w0"), b("w0")])
    }

    @Test func nestedComparesSeeTheStateBeforeTheTxn() throws {
        let store = MVCCStore()
        let txn = TxnRequest(success: [
            .put(PutRequest(key: b("k"), value: b("1"))),
            .txn(TxnRequest(
                compare: [Compare(key: b("k"), .version(0), .equal)],
                success: [.put(PutRequest(key: b("x"), value: []))],
                failure: [.put(PutRequest(key: b("y"), value: []))])),
        ])
        let (response, _) = try store.txn(txn)
        guard case let .txn(nested)? = response.responses.last else { Issue.record("no nested response"); return }
        #expect(nested.succeeded)
        #expect(try store.range(RangeRequest(key: b("x"))).count == 1)
        #expect(try store.range(RangeRequest(key: b("y"))).count == 0)
    }

    @Test func innerResponsesCarryEtcdsHeaderRevisions() throws {
        let store = MVCCStore()
        _ = try store.put(PutRequest(key: b("a"), value: b("1")))  // revision 2
        let txn = TxnRequest(success: [
            .range(RangeRequest(key: b("a"))),
            .deleteRange(DeleteRangeRequest(key: b("missing"))),
            .put(PutRequest(key: b("b"), value: [])),
            .range(RangeRequest(key: b("b"))),
            .txn(TxnRequest(success: [.range(RangeRequest(key: b("a")))])),
        ])
        let (response, _) = try store.txn(txn)
        #expect(response.revision == 3)
        let revisions: [Int64] = response.responses.map {
            switch $0 {
            case let .range(r): r.revision
            case let .deleteRange(d): d.revision
            case let .put(p): p.revision
            case let .txn(t): t.revision
            }
        }
        #expect(revisions == [2, 2, 3, 3, 0])
    }

    /// With sort order NONE, etcd keeps the first `limit` keys in key order and
    /// sorts only those by the target.
    @Test func limitWithNonKeyTargetAndNoOrder() throws {
        let store = MVCCStore()
        for _ in 0..<3 { _ = try store.put(PutRequest(key: b("a"), value: [])) }
        for _ in 0..<2 { _ = try store.put(PutRequest(key: b("b"), value: [])) }
        _ = try store.put(PutRequest(key: b("c"), value: []))
        var request = RangeRequest(key: b("a"), rangeEnd: b("d"))
        request.sortTarget = .version
        request.limit = 1
        let response = try store.range(request)
        #expect(response.kvs.map(\.key) == [b("b")] && response.more)
    }

    @Test func apiChecksMirrorEtcd() throws {
        let store = MVCCStore()
        var ignoreWithValue = PutRequest(key: b("k"), value: b("v"))
        ignoreWithValue.ignoreValue = true
        #expect(throws: KVError.valueProvided) { try store.put(ignoreWithValue) }
        var ignoreWithLease = PutRequest(key: b("k"), value: [], lease: 3)
        ignoreWithLease.ignoreLease = true
        #expect(throws: KVError.leaseProvided) { try store.put(ignoreWithLease) }
        #expect(throws: KVError.emptyKey) { try store.deleteRange(DeleteRangeRequest(key: [], rangeEnd: [0])) }
        #expect(throws: KVError.emptyKey) { try store.range(RangeRequest(key: [])) }
        #expect(throws: KVError.emptyKey) { try store.txn(TxnRequest(compare: [Compare(key: [], .version(0), .equal)])) }
        // Empty keys in the branch not taken are refused too.
        #expect(throws: KVError.emptyKey) { try store.txn(TxnRequest(failure: [.put(PutRequest(key: [], value: []))])) }
        // A nested txn counts against what its parent leaves of 128.
        let nested = TxnRequest(success: Array(repeating: .range(RangeRequest(key: b("k"))), count: 100)
            + [.txn(TxnRequest(success: Array(repeating: .range(RangeRequest(key: b("k"))), count: 50)))])
        #expect(throws: KVError.tooManyOperations) { try store.txn(nested) }
        // A from-key delete conflicts with nothing in etcd's interval check.
        let fromKey = TxnRequest(success: [.deleteRange(DeleteRangeRequest(key: b("a"), rangeEnd: [0])), .put(PutRequest(key: b("b"), value: []))])
        _ = try store.txn(fromKey)
        #expect(KVError.valueProvided.description == "etcdserver: value is provided")
        // Each nested txn gets what its parent leaves, whatever its siblings
        // use (etcd's checkRequestOp(u, maxTxnOps-opc)).
        let hundred = TxnRequest(success: Array(repeating: .range(RangeRequest(key: b("k"))), count: 100))
        _ = try store.txn(TxnRequest(success: [.txn(hundred)], failure: [.txn(hundred)]))
        _ = try store.txn(TxnRequest(success: [.txn(hundred), .txn(hundred)]))
        let full = TxnRequest(success: Array(repeating: .range(RangeRequest(key: b("k"))), count: 128))
        #expect(throws: KVError.tooManyOperations) { try store.txn(TxnRequest(success: [.txn(full)])) }
    }

    /// keys_only still sorts by value: etcd sorts, then drops the values.
    @Test func keysOnlySortedByValue() throws {
        let store = MVCCStore()
        for (key, value) in [("a", "3"), ("b", "1"), ("c", "2")] { _ = try store.put(PutRequest(key: b(key), value: b(value))) }
        var request = RangeRequest(key: b("a"), rangeEnd: b("d"))
        request.keysOnly = true
        request.sortTarget = .value
        request.sortOrder = .ascend
        let response = try store.range(request)
        #expect(response.kvs.map(\.key) == [b("b"), b("c"), b("a")])
        #expect(response.kvs.allSatisfy { $0.value.isEmpty })
    }

    /// A put that keeps a missing key's value, with an unknown lease: a Put
    /// hears of the lease first, a put in a txn of the key first (etcd's
    /// applierV3backend.Put against checkRequestPut).
    @Test func missingKeyAndUnknownLeaseAnsweredInEtcdsOrder() throws {
        let store = MVCCStore()
        store.leaseExists = { _ in false }
        var put = PutRequest(key: b("missing"), value: [], lease: 99)
        put.ignoreValue = true
        #expect(throws: KVError.leaseNotFound) { try store.put(put) }
        #expect(throws: KVError.keyNotFound) { try store.txn(TxnRequest(success: [.put(put)])) }
    }

    @Test func compactingAFreshStoreAtZeroWorks() throws {
        let store = MVCCStore()
        try store.compact(0)
        #expect(throws: KVError.compacted) { try store.compact(0) }
    }

    /// A txn that would fail a check in its taken branch changes nothing, even
    /// when the failing op sits in a nested txn after a write.
    @Test func nestedCheckFailureLeavesNoTrace() throws {
        let store = MVCCStore()
        var future = RangeRequest(key: b("k"))
        future.revision = 99
        let txn = TxnRequest(success: [
            .put(PutRequest(key: b("a"), value: [])),
            .txn(TxnRequest(success: [.range(future)])),
        ])
        #expect(throws: KVError.futureRevision) { try store.txn(txn) }
        #expect(store.revision == 1)
        #expect(try store.range(RangeRequest(key: b("a"))).count == 0)
    }
}
