import EnsembleAPI
import EnsembleClient
import Foundation
import SwiftProtobuf

/// The requests of etcd's benchmark subcommands (etcd v3.4 `tools/benchmark`).
public enum BenchWorkloads {
    /// Key and value sizes and the key space of put and txn-put.
    public struct Writes: Sendable {
        public var keySize: Int
        public var valueSize: Int
        public var keys: KeyPicker

        public init(keySize: Int, valueSize: Int, keys: KeyPicker) {
            self.keySize = keySize
            self.valueSize = valueSize
            self.keys = keys
        }

        public func validate() throws(BenchError) {
            guard keys.keySpaceSize > 0 else { throw BenchError("--key-space-size must be positive") }
            guard valueSize >= 0 else { throw BenchError("--val-size must not be negative") }
            let needed = BenchKeys.minimumKeySize(keySpaceSize: keys.keySpaceSize)
            guard keySize >= needed else {
                throw BenchError("--key-size \(keySize) cannot hold \(keys.keySpaceSize) distinct keys; use at least \(needed)")
            }
        }
    }

    /// `put`: one Put per request, of key `index(i)` and one random value
    /// (the same bytes for the whole run, as etcd).
    public static func put(_ writes: Writes) -> BenchCall {
        let value = Data(randomBytes(writes.valueSize))
        return BenchCall(path: EtcdMethod.put, make: { i, random in
            var request = Etcdserverpb_PutRequest()
            request.key = Data(BenchKeys.key(index: writes.keys.index(forRequest: i, using: &random), size: writes.keySize))
            request.value = value
            return encode(request)
        }, check: { try decode(Etcdserverpb_PutResponse.self, $0) })
    }

    /// `txn-put`: one Txn per request whose success branch puts `opsPerTxn`
    /// keys, `(i × ops + j)` in the key space, as etcd's txn-put does (random
    /// keys could repeat within a txn, which etcd refuses), with no compares.
    public static func txnPut(_ writes: Writes, opsPerTxn: Int) -> BenchCall {
        let value = Data(randomBytes(writes.valueSize))
        return BenchCall(path: EtcdMethod.txn, make: { i, _ in
            var txn = Etcdserverpb_TxnRequest()
            txn.success = (0..<opsPerTxn).map { j in
                let index = (i * opsPerTxn + j) % writes.keys.keySpaceSize
                var op = Etcdserverpb_RequestOp()
                op.requestPut.key = Data(BenchKeys.key(index: index, size: writes.keySize))
                op.requestPut.value = value
                return op
            }
            return encode(txn)
        }, check: { try decode(Etcdserverpb_TxnResponse.self, $0) })
    }

    /// `range KEY [END]`: the same Range every request; linearizable unless
    /// `serializable`.
    public static func range(key: String, end: String?, serializable: Bool) -> BenchCall {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(key.utf8)
        if let end { request.rangeEnd = Data(end.utf8) }
        request.serializable = serializable
        let bytes = encode(request)
        return BenchCall(path: EtcdMethod.range, make: { _, _ in bytes }, check: { try decode(Etcdserverpb_RangeResponse.self, $0) })
    }

    /// Decodes an answer as ``EtcdClient`` does, failing as it fails.
    static func decode<Response: SwiftProtobuf.Message>(_: Response.Type, _ reply: [UInt8]) throws {
        do {
            _ = try Response(serializedBytes: reply)
        } catch {
            throw GRPCCallError(code: GRPCCallError.internalCode, message: "cannot decode \(Response.protoMessageName): \(error)")
        }
    }

    /// A request message's bytes; these messages always encode.
    static func encode(_ message: some SwiftProtobuf.Message) -> [UInt8] {
        (try? message.serializedBytes()) ?? []
    }

    /// Random bytes, drawn once per run (etcd's `mustRandBytes`).
    static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<max(0, count)).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }
}
