@testable import EnsembleServer
import EnsembleAPI
import Foundation
import KV
import Testing

/// etcd's checkTxnRequest on the message, in etcd's order (KVService.check).
@Suite struct TxnCheckTests {
    func op(_ body: (inout Etcdserverpb_RequestOp) -> Void = { _ in }) -> Etcdserverpb_RequestOp {
        var op = Etcdserverpb_RequestOp()
        body(&op)
        return op
    }

    func range(_ key: String) -> Etcdserverpb_RequestOp {
        op { $0.requestRange.key = Data(key.utf8) }
    }

    @Test func errorsComeInEtcdsOrder() {
        // An empty compare key is found before an empty operation.
        var request = Etcdserverpb_TxnRequest()
        request.compare = [Etcdserverpb_Compare()]
        request.success = [op()]
        #expect(throws: KVError.emptyKey) { try KVService.check(request, maxOperations: 128) }
        // Too many operations before anything else.
        request.success = [op()] + Array(repeating: range("k"), count: 128)
        #expect(throws: KVError.tooManyOperations) { try KVService.check(request, maxOperations: 128) }
        // An empty operation is "key not found", in its place: after the ops before it.
        request = Etcdserverpb_TxnRequest()
        request.success = [op { $0.requestPut.key = Data("k".utf8); $0.requestPut.value = Data("v".utf8); $0.requestPut.ignoreValue = true }, op()]
        #expect(throws: KVError.valueProvided) { try KVService.check(request, maxOperations: 128) }
        request.success = [range("k"), op()]
        #expect(throws: KVError.keyNotFound) { try KVService.check(request, maxOperations: 128) }
    }

    @Test func nestedTxnsGetWhatTheirParentLeaves() throws {
        var hundred = Etcdserverpb_TxnRequest()
        hundred.success = Array(repeating: range("k"), count: 100)
        var request = Etcdserverpb_TxnRequest()
        request.success = [op { $0.requestTxn = hundred }, op { $0.requestTxn = hundred }]
        request.failure = [op { $0.requestTxn = hundred }]
        try KVService.check(request, maxOperations: 128)
        var full = Etcdserverpb_TxnRequest()
        full.success = Array(repeating: range("k"), count: 128)
        request.success = [op { $0.requestTxn = full }]
        #expect(throws: KVError.tooManyOperations) { try KVService.check(request, maxOperations: 128) }
    }
}

/// Compare enums from a newer API are evaluated as etcd evaluates them
/// (`compareKV`): an unknown target compares equal (its result stays 0), an
/// unknown result holds. The API refuses them before proposing (members of
/// older versions skipped such an entry: review finding), so this is what a
/// later version can rely on once it lets them through.
@Suite struct UnknownCompareTests {
    @Test func theAPIRefusesThemNestedToo() {
        var compare = Etcdserverpb_Compare()
        compare.key = Data("k".utf8)
        var request = Etcdserverpb_TxnRequest()
        request.compare = [compare]
        #expect(!KVService.hasUnknownCompare(request))
        var inner = request
        inner.compare[0].result = .UNRECOGNIZED(9)
        var op = Etcdserverpb_RequestOp()
        op.requestTxn = inner
        request.failure = [op]
        #expect(KVService.hasUnknownCompare(request))
        request.failure = []
        request.compare[0].target = .UNRECOGNIZED(9)
        #expect(KVService.hasUnknownCompare(request))
    }

    func evaluate(target: Int, result: Int, key: String) throws -> Bool {
        let store = MVCCStore()
        _ = try store.put(PutRequest(key: Array("k".utf8), value: Array("v".utf8)))
        var compare = Etcdserverpb_Compare()
        compare.key = Data(key.utf8)
        compare.target = .init(rawValue: target) ?? .version
        compare.result = .init(rawValue: result) ?? .equal
        compare.version = 5
        var request = Etcdserverpb_TxnRequest()
        request.compare = [compare]
        return try store.txn(TxnRequest(request)).0.succeeded
    }

    @Test func unknownTargetsCompareEqual() throws {
        #expect(try evaluate(target: 9, result: 0, key: "k"))  // EQUAL
        #expect(try !evaluate(target: 9, result: 1, key: "k"))  // GREATER
        #expect(try !evaluate(target: 9, result: 3, key: "k"))  // NOT_EQUAL
        // A missing key too (only a value compare fails on one).
        #expect(try evaluate(target: 9, result: 0, key: "missing"))
    }

    @Test func unknownResultsHold() throws {
        #expect(try evaluate(target: 0, result: 7, key: "k"))  // VERSION ? 5, version is 1
        #expect(try evaluate(target: 3, result: 7, key: "k"))  // VALUE on an existing key
        #expect(try !evaluate(target: 3, result: 7, key: "missing"))  // a value compare on a missing key fails first
    }
}
