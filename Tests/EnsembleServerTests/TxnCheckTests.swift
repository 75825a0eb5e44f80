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
