import EnsembleAPI
import Foundation
import KV
import Raft
import SwiftProtobuf

/// etcd's KV service (Range, Put, DeleteRange, Txn, Compact) over a node that
/// replicates the KV store. Writes are proposed through Raft and answered when
/// applied; reads are linearizable (ReadIndex) unless the request asks for
/// serializable. Every response carries the header etcd fills.
public struct KVService: Sendable {
    let node: NodeLoop<KVReplica>
    let clusterID: UInt64
    let routing: LeaderRouting
    let space: SpaceQuota
    /// etcd's `--max-request-bytes`: a write whose proposal would be larger is
    /// refused with "etcdserver: request is too large" (reads are not bound by
    /// it, only by the transport's limit, this plus 512 KiB).
    let maxRequestBytes: Int

    /// `space` is the member's quota, shared with its ``KVReplica``.
    /// `leaderInProcess` finds the leader's node when it runs in this process,
    /// so a follower can hand a write to it (etcd followers forward proposals).
    public init(
        node: NodeLoop<KVReplica>, clusterID: UInt64, space: SpaceQuota = SpaceQuota(),
        maxRequestBytes: Int = MemberConfiguration.defaultMaxRequestBytes,
        leaderInProcess: @escaping @Sendable (NodeID) -> NodeLoop<KVReplica>? = { _ in nil }
    ) {
        self.node = node
        self.clusterID = clusterID
        self.space = space
        self.maxRequestBytes = maxRequestBytes
        self.routing = LeaderRouting(node: node, leaderInProcess: leaderInProcess)
    }

    /// What etcd adds to a request when it proposes it (an
    /// InternalRaftRequest: a header with the request id, and the request's
    /// field), whose size it checks against ``maxRequestBytes``: 17 bytes, as
    /// measured against etcd 3.4.23 (the largest put it takes is 1,572,847
    /// bytes at the default limit).
    static let proposalOverhead = 17

    func tooLarge(_ requestBytes: Int) -> Bool { requestBytes + Self.proposalOverhead > maxRequestBytes }

    /// Registers the KV methods on `router`. They are direct handlers: the
    /// request goes to the node loop with a callback, and the response is
    /// encoded on the connection's event loop.
    public func register(on router: inout GRPCRouter) {
        let service = self
        router.unary["/etcdserverpb.KV/Range"] = .direct { bytes, reply in service.range(bytes, reply: reply) }
        router.unary["/etcdserverpb.KV/Put"] = .direct { bytes, reply in
            if let put = PutWire(bytes, in: bytes.indices) { return service.put(bytes, put, reply: reply) }
            service.write(bytes, as: Etcdserverpb_PutRequest.self, reply: reply, adds: { $0.key.count + $0.value.count }) {
                request throws(KVError) in
                try MVCCStore.validatePut(
                    keyIsEmpty: request.key.isEmpty, valueIsEmpty: request.value.isEmpty,
                    ignoreValue: request.ignoreValue, ignoreLease: request.ignoreLease, lease: request.lease)
                var command = Ensemble_V1_Command()
                command.put = request
                return command
            }
        }
        router.unary["/etcdserverpb.KV/DeleteRange"] = .direct { bytes, reply in
            service.write(bytes, as: Etcdserverpb_DeleteRangeRequest.self, reply: reply) { request throws(KVError) in
                try MVCCStore.validate(delete: DeleteRangeRequest(request))
                var command = Ensemble_V1_Command()
                command.deleteRange = request
                return command
            }
        }
        router.unary["/etcdserverpb.KV/Txn"] = .direct { bytes, reply in service.txn(bytes, reply: reply) }
        router.unary["/etcdserverpb.KV/Compact"] = .direct { bytes, reply in
            service.write(bytes, as: Etcdserverpb_CompactionRequest.self, reply: reply) { request throws(KVError) in
                var command = Ensemble_V1_Command()
                command.compaction = request
                return command
            }
        }
    }

    var headers: HeaderSource {
        let status = node.status
        return HeaderSource(clusterID: clusterID, memberID: status.id, raftTerm: status.term)
    }

    func range(_ bytes: [UInt8], reply: @escaping GRPCUnary.Reply) {
        let request: Etcdserverpb_RangeRequest
        do {
            request = try Etcdserverpb_RangeRequest(serializedBytes: bytes)
        } catch {
            return reply(.failure(.invalidArgument("malformed RangeRequest")))
        }
        let query = RangeRequest(request)
        do {
            try MVCCStore.validate(range: query)
        } catch {
            return reply(.failure(Self.status(error)))
        }
        let service = self
        node.read(query, linearizable: !request.serializable) { result in
            switch result {
            case let .success(.success(response)):
                let weight = response.kvs.reduce(0) { $0 + $1.key.count + $1.value.count }
                reply(.success(GRPCResponse(weight: weight) { Etcdserverpb_RangeResponse(response, service.headers) }))
            case let .success(.failure(error)):
                reply(.failure(Self.status(error)))
            case let .failure(error):
                reply(.failure(Self.status(error)))
            }
        }
    }

    func write<Request: SwiftProtobuf.Message>(
        _ bytes: [UInt8], as: Request.Type, reply: @escaping GRPCUnary.Reply, adds: (Request) -> Int? = { _ in nil },
        _ makeCommand: (Request) throws(KVError) -> Ensemble_V1_Command
    ) {
        let request: Request
        do {
            request = try Request(serializedBytes: bytes)
        } catch {
            return reply(.failure(.invalidArgument("malformed \(Request.protoMessageName)")))
        }
        let command: Ensemble_V1_Command
        do {
            command = try makeCommand(request)
        } catch {
            return reply(.failure(Self.status(error)))
        }
        submit(command, size: bytes.count, adds: adds(request), reply: reply)
    }

    /// Proposes `command` (from a request of `size` bytes, adding `adds`
    /// bytes to the store, if any: checked against the space quota).
    private func submit(_ command: Ensemble_V1_Command, size: Int, adds: Int?, reply: @escaping GRPCUnary.Reply) {
        if tooLarge(size) { return reply(.failure(Self.status(KVError.valueTooLarge))) }
        let service = self
        let propose: @Sendable () -> Void = {
            service.routing.submit(command) { result in reply(result.flatMap { service.response($0) }) }
        }
        guard let adds else { return propose() }
        routing.checkSpace(space, adding: adds) { refused in
            if let refused { reply(.failure(refused)) } else { propose() }
        }
    }

    /// A Txn: etcd's checks in etcd's order, then — for a txn of ranges only —
    /// a read, served as a Range is (linearizable unless every range asks
    /// for serializable; etcd never logs such a txn), else a proposal.
    func txn(_ bytes: [UInt8], reply: @escaping GRPCUnary.Reply) {
        let request: Etcdserverpb_TxnRequest
        do {
            request = try Etcdserverpb_TxnRequest(serializedBytes: bytes)
        } catch {
            return reply(.failure(.invalidArgument("malformed \(Etcdserverpb_TxnRequest.protoMessageName)")))
        }
        let txn: TxnRequest
        do {
            try Self.check(request, maxOperations: MVCCStore.maxTxnOperations)
            if Self.hasUnknownCompare(request) { return reply(.failure(Self.unknownCompare)) }
            txn = try TxnRequest(request)
            try MVCCStore.validate(txn)
        } catch {
            return reply(.failure(Self.status(error)))
        }
        guard txn.isRangesOnly else {
            var command = Ensemble_V1_Command()
            command.txn = request
            return submit(command, size: bytes.count, adds: txn.mayPut ? bytes.count : nil, reply: reply)
        }
        let serializable = (txn.success + txn.failure).allSatisfy { if case let .range(r) = $0 { r.serializable } else { false } }
        let service = self
        Task {
            let read: @Sendable (KVReplica) -> Result<TxnResponse, KVError> = { replica in
                do throws(KVError) { return .success(try replica.machine.store.txn(txn).0) } catch { return .failure(error) }
            }
            let result: Result<TxnResponse, KVError>
            do throws(NodeError) {
                if serializable {
                    guard let served = await service.node.withMachine(read) else { throw NodeError.stopped }
                    result = served
                } else {
                    result = try await service.node.withMachineConfirmed(read)
                }
            } catch {
                return reply(.failure(Self.status(error)))
            }
            switch result {
            case let .success(response): reply(.success(GRPCResponse { Etcdserverpb_TxnResponse(response, service.headers) }))
            case let .failure(error): reply(.failure(Self.status(error)))
            }
        }
    }

    /// etcd's `checkTxnRequest` on the message, in its order: the operation
    /// count (a nested txn gets what its parent leaves, whatever its
    /// siblings use), empty compare keys, then each operation in turn (an
    /// empty one is "key not found").
    static func check(_ request: Etcdserverpb_TxnRequest, maxOperations: Int) throws(KVError) {
        let ops = max(request.compare.count, request.success.count, request.failure.count)
        if ops > maxOperations { throw .tooManyOperations }
        for compare in request.compare where compare.key.isEmpty { throw .emptyKey }
        for op in request.success + request.failure {
            switch op.request {
            case let .requestRange(r)?: if r.key.isEmpty { throw .emptyKey }
            case let .requestPut(p)?:
                try MVCCStore.validatePut(
                    keyIsEmpty: p.key.isEmpty, valueIsEmpty: p.value.isEmpty, ignoreValue: p.ignoreValue,
                    ignoreLease: p.ignoreLease, lease: p.lease)
            case let .requestDeleteRange(d)?: if d.key.isEmpty { throw .emptyKey }
            case let .requestTxn(inner)?: try check(inner, maxOperations: maxOperations - ops)
            case nil: throw .keyNotFound
            }
        }
    }

    /// Compare enum values from a newer API. This version evaluates them as
    /// etcd does (an unknown target compares equal, an unknown result holds),
    /// but members before it skipped such a txn when applying it, so one in
    /// the log could leave members of two versions with different data: they
    /// are refused before proposing until members can tell each other's
    /// versions.
    static func hasUnknownCompare(_ request: Etcdserverpb_TxnRequest) -> Bool {
        for compare in request.compare {
            if case .UNRECOGNIZED = compare.target { return true }
            if case .UNRECOGNIZED = compare.result { return true }
        }
        // No concatenated copy of the ops: this runs on every txn.
        func nested(_ op: Etcdserverpb_RequestOp) -> Bool {
            if case let .requestTxn(inner)? = op.request { hasUnknownCompare(inner) } else { false }
        }
        return request.success.contains(where: nested) || request.failure.contains(where: nested)
    }

    static let unknownCompare = GRPCStatus.invalidArgument("etcdserver: unknown compare target or result in txn request")

    /// A put read from its wire bytes (``PutWire``), proposed with those bytes
    /// embedded in the log entry: what ``write(_:as:reply:adds:_:)`` does for
    /// any request, without a decoded message or a second encoding.
    func put(_ bytes: [UInt8], _ put: PutWire, reply: @escaping GRPCUnary.Reply) {
        if tooLarge(bytes.count) { return reply(.failure(Self.status(KVError.valueTooLarge))) }
        do {
            try MVCCStore.validatePut(
                keyIsEmpty: put.key.isEmpty, valueIsEmpty: put.value.isEmpty,
                ignoreValue: put.ignoreValue, ignoreLease: put.ignoreLease, lease: put.lease)
        } catch {
            return reply(.failure(Self.status(error)))
        }
        let service = self
        routing.checkSpace(space, adding: put.key.count + put.value.count) { refused in
            if let refused { return reply(.failure(refused)) }
            service.routing.submit(entry: PutWire.commandEntry(embedding: bytes)) { result in
                switch result {
                case let .success(.put(response)): reply(.success(PutWire.response(response) { service.headers }))
                default: reply(result.flatMap { service.response($0) })
                }
            }
        }
    }

    /// The response message for what applying a write produced, with its header.
    private func response(_ applied: KVStateMachine.Response) -> Result<GRPCResponse, GRPCStatus> {
        let service = self
        switch applied {
        case let .put(r): return .success(GRPCResponse { Etcdserverpb_PutResponse(r, service.headers) })
        case let .deleteRange(r):
            // With prev_kv, every deleted key and value comes back.
            let weight = r.previous.reduce(0) { $0 + $1.key.count + $1.value.count }
            return .success(GRPCResponse(weight: weight) { Etcdserverpb_DeleteRangeResponse(r, service.headers) })
        case let .txn(r): return .success(GRPCResponse { Etcdserverpb_TxnResponse(r, service.headers) })
        case let .compact(revision):
            return .success(GRPCResponse {
                var response = Etcdserverpb_CompactionResponse()
                response.header = service.headers.header(revision: revision)
                return response
            })
        default:
            return .failure(.internal("unexpected response"))
        }
    }

    static func serialize(_ message: some SwiftProtobuf.Message) -> Result<[UInt8], GRPCStatus> {
        do {
            return .success(try message.serializedBytes() as [UInt8])
        } catch {
            return .failure(.internal("cannot encode the response"))
        }
    }

    /// etcd's status for each error (rpctypes).
    static func status(_ error: any Error) -> GRPCStatus {
        switch error {
        case let kv as KVError:
            return GRPCStatus(code: kv.grpcCode.rawValue, message: kv.description)
        case let node as NodeError:
            switch node {
            case .noLeader: return .unavailable("etcdserver: no leader")
            case let .notLeader(leader): return GRPCStatus(code: 14, message: "etcdserver: no leader", leader: leader)
            case .leaderChanged: return .unavailable("etcdserver: leader changed")
            case .outcomeUnknown: return .unavailable("etcdserver: request timed out")
            case .stopped: return .unavailable("etcdserver: server stopped")
            case let .proposalDropped(why): return .unavailable("etcdserver: request cancelled: \(why)")
            case .tooManyRequests: return GRPCStatus(code: 8, message: "etcdserver: too many requests")
            }
        default:
            return .internal("\(error)")
        }
    }
}
