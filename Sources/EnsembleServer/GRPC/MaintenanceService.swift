import Bolt
import Crypto
import EnsembleAPI
import Foundation
import KV
import Raft
import SwiftProtobuf
import Synchronization

/// etcd's Maintenance service: Status, Hash, HashKV, Alarm, Defragment,
/// Snapshot and MoveLeader, answered from the member's applied state and
/// published Raft status.
public struct MaintenanceService: Sendable {
    let node: NodeLoop<KVReplica>
    let clusterID: UInt64
    let routing: LeaderRouting
    let space: SpaceQuota
    let summary: AppliedSummary
    /// Reported as the server version (semver with build metadata).
    public static let version = "3.4.0+ensemble"
    /// Snapshot stream chunk size (etcd sends 32 KiB blobs).
    static let snapshotChunk = 32 * 1024

    public init(
        node: NodeLoop<KVReplica>, clusterID: UInt64, space: SpaceQuota, summary: AppliedSummary,
        leaderInProcess: @escaping @Sendable (NodeID) -> NodeLoop<KVReplica>? = { _ in nil }
    ) {
        self.node = node
        self.clusterID = clusterID
        self.space = space
        self.summary = summary
        self.routing = LeaderRouting(node: node, leaderInProcess: leaderInProcess)
    }

    public func register(on router: inout GRPCRouter) {
        let service = self
        router.unary["/etcdserverpb.Maintenance/Status"] = .task { _ in await service.status() }
        router.unary["/etcdserverpb.Maintenance/Hash"] = .task { _ in await service.hash() }
        router.unary["/etcdserverpb.Maintenance/HashKV"] = .task { await service.hashKV($0) }
        router.unary["/etcdserverpb.Maintenance/Alarm"] = .task { await service.alarm($0) }
        router.unary["/etcdserverpb.Maintenance/Defragment"] = .task { _ in await service.defragment() }
        router.unary["/etcdserverpb.Maintenance/MoveLeader"] = .task { await service.moveLeader($0) }
        router.streaming["/etcdserverpb.Maintenance/Snapshot"] = { stream in
            SnapshotStream(service: service, stream: stream)
        }
    }

    func header(revision: Int64) -> Etcdserverpb_ResponseHeader {
        let status = node.status
        return HeaderSource(clusterID: clusterID, memberID: status.id, raftTerm: status.term).header(revision: revision)
    }

    /// What the applied state says.
    struct Applied: Sendable {
        var revision: Int64
        var bytes: Int
        var alarms: [Alarm]
    }

    /// As last published by the apply thread: not behind its queue.
    func applied() async throws(NodeError) -> Applied {
        guard node.status.running else { throw NodeError.stopped }
        return Applied(revision: summary.revision, bytes: space.usedBytes, alarms: summary.alarms)
    }

    func status() async -> Result<[UInt8], GRPCStatus> {
        let state: Applied
        do { state = try await applied() } catch { return .failure(KVService.status(error)) }
        let status = node.status
        var response = Etcdserverpb_StatusResponse()
        response.header = header(revision: state.revision)
        response.version = Self.version
        response.dbSize = Int64(state.bytes)
        response.dbSizeInUse = Int64(state.bytes)
        response.leader = status.leader
        response.raftIndex = status.commitIndex
        response.raftTerm = status.term
        response.raftAppliedIndex = status.appliedIndex
        response.isLearner = status.learners.contains(status.id)
        if status.leader == .none { response.errors.append(NodeError.noLeader.description) }
        // As etcd formats them (protobuf text: a zero member id is left out).
        response.errors += state.alarms.map { ($0.member == 0 ? "" : "memberID:\($0.member) ") + "alarm:\($0.kind.name) " }
        return KVService.serialize(response)
    }

    /// etcd hashes its whole database file; here the hash covers the same
    /// content, the retained key history (HashKV at the current revision).
    func hash() async -> Result<[UInt8], GRPCStatus> {
        switch await hashKV(revision: 0) {
        case let .success((hash, revision, _)):
            var response = Etcdserverpb_HashResponse()
            response.header = header(revision: revision)
            response.hash = hash
            return KVService.serialize(response)
        case let .failure(status):
            return .failure(status)
        }
    }

    func hashKV(_ bytes: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        guard let request = try? Etcdserverpb_HashKVRequest(serializedBytes: bytes) else {
            return .failure(.invalidArgument("malformed HashKVRequest"))
        }
        switch await hashKV(revision: request.revision) {
        case let .success((hash, revision, compacted)):
            var response = Etcdserverpb_HashKVResponse()
            response.header = header(revision: revision)
            response.hash = hash
            // -1 for a store never compacted, as etcd's compactMainRev.
            response.compactRevision = compacted
            return KVService.serialize(response)
        case let .failure(status):
            return .failure(status)
        }
    }

    /// Frozen on the apply thread (O(1)), hashed off it: hashing reads every
    /// retained value, some from the history files.
    private func hashKV(revision: Int64) async -> Result<(UInt32, Int64, Int64), GRPCStatus> {
        await Self.hashKV(node: node, revision: revision)
    }

    /// Hashes run one at a time, on a queue of their own: each reads the
    /// whole retained history, and on the global dispatch pool (which timers
    /// use too) any number of them ran at once.
    private static let hashQueue = DispatchQueue(label: "ensemble-hash")
    /// Hashes waiting or running in this process. Each waiting one holds a
    /// frozen copy of the state that writes then stop sharing, so past 16
    /// they are refused as etcd refuses an overloaded member.
    private static let hashes = Admission(limit: 16)

    /// HashKV of `node`'s applied state: (hash, current revision, compaction
    /// revision). Also the corruption check's own hash; `confirmed` first
    /// applies everything committed when it is called (a ReadIndex round).
    static func hashKV(
        node: NodeLoop<KVReplica>, revision: Int64, confirmed: Bool = false
    ) async -> Result<(UInt32, Int64, Int64), GRPCStatus> {
        guard hashes.enter() else { return .failure(KVService.status(NodeError.tooManyRequests)) }
        defer { hashes.leave() }
        let frozen: FrozenKVState
        if confirmed {
            do {
                frozen = try await node.withMachineConfirmed { $0.machine.freeze() }
            } catch {
                return .failure(KVService.status(error))
            }
        } else {
            guard let state = await node.withMachine({ $0.machine.freeze() }) else {
                return .failure(KVService.status(NodeError.stopped))
            }
            frozen = state
        }
        // A long blocking scan: on a dispatch queue, not the cooperative pool.
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<(UInt32, Int64, Int64), KVError>, Never>) in
            hashQueue.async {
                continuation.resume(returning: Result { () throws(KVError) in try frozen.hashKV(revision: revision) }
                    .map { ($0.hash, $0.revision, $0.compactRevision) })
            }
        }
        return result.mapError { KVService.status($0) }
    }

    /// GET lists the raised alarms; ACTIVATE and DEACTIVATE go through the log
    /// and answer with the alarm they changed (etcdctl's `alarm disarm` lists
    /// and then deactivates each).
    func alarm(_ bytes: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        guard let request = try? Etcdserverpb_AlarmRequest(serializedBytes: bytes) else {
            return .failure(.invalidArgument("malformed AlarmRequest"))
        }
        var response = Etcdserverpb_AlarmResponse()
        switch request.action {
        case .get:
            // Linearizable, as etcd's (which puts the GET through the log).
            let state: Applied
            do {
                state = try await node.withMachineConfirmed { replica in
                    Applied(revision: replica.machine.store.revision, bytes: replica.machine.store.approximateBytes,
                            alarms: replica.machine.alarms.sorted())
                }
            } catch {
                return .failure(KVService.status(error))
            }
            response.header = header(revision: state.revision)
            response.alarms = state.alarms
                .filter { request.alarm == .none || $0.kind.proto == request.alarm }
                .map(Etcdserverpb_AlarmMember.init)
        case .activate, .deactivate:
            // No alarm named: nothing to change, as etcd's apply answers it
            // (clientv3's AlarmDisarm of one member sends exactly that).
            if request.alarm == .none {
                do { response.header = header(revision: try await applied().revision) } catch { return .failure(KVService.status(error)) }
                return KVService.serialize(response)
            }
            guard request.alarm == .nospace || request.alarm == .corrupt else {
                return .failure(.invalidArgument("etcdserver: unknown alarm"))
            }
            var command = Ensemble_V1_Command()
            command.alarm = request
            switch await routing.submit(command) {
            case let .success(.alarms(changed)):
                // What the apply answered (etcd's): the alarm raised, or the
                // one cleared; nothing when clearing one that was not raised.
                response.header = header(revision: (try? await applied().revision) ?? 0)
                response.alarms = changed.map(Etcdserverpb_AlarmMember.init)
            case .success:
                return .failure(.internal("unexpected response"))
            case let .failure(status):
                return .failure(status)
            }
        case .UNRECOGNIZED:
            return .failure(.invalidArgument("etcdserver: unknown alarm action"))
        }
        return KVService.serialize(response)
    }

    /// Nothing to defragment: the store lives in memory and the log is
    /// append-only segments that snapshots purge. Answered as success so
    /// operators' scripts (etcdctl defrag) work.
    func defragment() async -> Result<[UInt8], GRPCStatus> {
        var response = Etcdserverpb_DefragmentResponse()
        // A stopped member answers "etcdserver: server stopped", as etcd's.
        do { response.header = header(revision: try await applied().revision) } catch { return .failure(KVService.status(error)) }
        return KVService.serialize(response)
    }

    /// Hands leadership to `targetID` and waits until it leads (etcd's
    /// MoveLeader: only the leader accepts it).
    func moveLeader(_ bytes: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        guard let request = try? Etcdserverpb_MoveLeaderRequest(serializedBytes: bytes) else {
            return .failure(.invalidArgument("malformed MoveLeaderRequest"))
        }
        let status = node.status
        guard status.role == .leader else {
            return .failure(GRPCStatus(code: 9, message: "etcdserver: not leader"))
        }
        guard status.voters.contains(request.targetID) else {
            return .failure(GRPCStatus(code: 9, message: "etcdserver: bad leader transferee"))
        }
        // To itself: nothing to transfer (etcd answers success at once).
        if request.targetID != status.id { node.transferLeadership(to: request.targetID) }
        let deadline = ContinuousClock.now + .seconds(7)
        while ContinuousClock.now < deadline {
            if node.status.leader == request.targetID {
                var response = Etcdserverpb_MoveLeaderResponse()
                response.header = header(revision: (try? await applied().revision) ?? 0)
                return KVService.serialize(response)
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        // etcd maps no code for this error: grpc-go sends it as Unknown.
        return .failure(GRPCStatus(code: 2, message: "etcdserver: request timed out, leader transfer took too long"))
    }

    /// The snapshot file the Snapshot call streamed before it streamed etcd's
    /// format (``EtcdBackupFile``), still read by `ensemble snapshot
    /// restore|status`: a body whose size is a multiple of 512, then the
    /// body's SHA-256. The body is the state (``KVStateMachine/snapshot()``),
    /// zero padding, and the state's length as a little-endian UInt64 in its
    /// last 8 bytes. This builds one (tests of that reading).
    public static func snapshotFile(state: [UInt8]) -> [UInt8] {
        var body = state
        body += snapshotTrailer(stateCount: state.count)
        return body + Array(SHA256.hash(data: body))
    }

    /// The padding and length that end a snapshot body of `stateCount` bytes of state.
    static func snapshotTrailer(stateCount: Int) -> [UInt8] {
        let size = (stateCount + 8 + 511) / 512 * 512
        var trailer = [UInt8](repeating: 0, count: size - stateCount - 8)
        withUnsafeBytes(of: UInt64(stateCount).littleEndian) { trailer.append(contentsOf: $0) }
        return trailer
    }

    /// The state inside a snapshot file, after checking its hash and layout.
    /// `verifyHash` false skips the SHA-256 comparison (`--skip-hash-check`).
    public static func state(inSnapshotFile file: [UInt8], verifyHash: Bool = true) throws -> [UInt8] {
        struct Damaged: Error, CustomStringConvertible { var description: String }
        guard file.count >= 512 + 32, (file.count - 32) % 512 == 0 else {
            throw Damaged(description: "neither an etcd backup (bbolt) nor an Ensemble snapshot file (\(file.count) bytes)")
        }
        let body = file[..<(file.count - 32)]
        guard !verifyHash || Array(SHA256.hash(data: body)) == Array(file[(file.count - 32)...]) else {
            throw Damaged(description: "snapshot file damaged: SHA-256 mismatch")
        }
        var length: UInt64 = 0
        for (i, byte) in body.suffix(8).enumerated() { length |= UInt64(byte) << (8 * UInt64(i)) }
        guard length <= UInt64(body.count - 8) else {
            throw Damaged(description: "snapshot file damaged: state length \(length) beyond the body")
        }
        return Array(body.prefix(Int(length)))
    }
}

/// One `Snapshot` call: the client sends its request, then gets the snapshot in
/// chunks, each saying how many bytes remain.
///
/// The state is frozen on the apply thread (cheap, copy-on-write) and written
/// as etcd's backup format (``FrozenKVState/etcdBackup(consistentIndex:)``)
/// on a thread of its own straight into the stream, a chunk at a time, with
/// the SHA-256 computed as it goes: memory is the file's plan (about 32 bytes
/// per retained version) and a few chunks, never the encoded state, and a
/// client that goes away stops the writing.
final class SnapshotStream: GRPCStreamReceiver {
    let service: MaintenanceService
    let sender: SnapshotSender
    private var started = false

    init(service: MaintenanceService, stream: GRPCServerStream) {
        self.service = service
        self.sender = SnapshotSender(stream: stream)
    }

    func received(_ message: [UInt8]) {
        guard !started else { return }
        started = true
        let service = self.service
        let sender = self.sender
        guard SnapshotSender.running.enter() else { return sender.stream.finish(KVService.status(NodeError.tooManyRequests)) }
        service.node.perform(
            { replica in
                let frozen = replica.machine.freeze()
                let applied = service.node.status.appliedIndex
                let header = service.header(revision: replica.machine.store.revision)
                // A thread of its own, not the shared dispatch pool: a client
                // that reads slowly holds it for as long as it takes.
                Thread {
                    sender.send(frozen.etcdBackup(consistentIndex: applied), header: header)
                    SnapshotSender.running.leave()
                }.start()
            },
            refused: {
                SnapshotSender.running.leave()
                sender.stream.finish(KVService.status(NodeError.stopped))
            })
    }

    /// A client that ends its side without a request gets what grpc-go's
    /// generated handler gives it (its RecvMsg's io.EOF, as Unknown), rather
    /// than an open call (review finding).
    func clientFinished() {
        if !started { sender.stream.finish(GRPCStatus(code: 2, message: "EOF")) }
    }
    func closed() { sender.ended.store(true, ordering: .relaxed) }
}

/// Encodes a frozen state into a Snapshot call (on a thread of its own: it
/// waits for the client when more than ``maxQueued`` bytes are queued). A
/// client that takes nothing for ``stallTimeout`` — it keeps the connection
/// but stopped reading — gets DEADLINE_EXCEEDED, and the thread and the
/// frozen state are let go.
final class SnapshotSender: Sendable {
    let stream: GRPCServerStream
    /// Set when the call is over: the encoder stops at its next chunk.
    let ended = Atomic<Bool>(false)
    static let maxQueued = 4 << 20
    /// Snapshot calls being sent in this process. Each holds a thread and a
    /// frozen copy of the state that writes then stop sharing, so beyond 8
    /// at once, calls are refused ("etcdserver: too many requests").
    static let running = Admission(limit: 8)
    let stallTimeout: Duration

    init(stream: GRPCServerStream, stallTimeout: Duration = .seconds(120)) {
        self.stream = stream
        self.stallTimeout = stallTimeout
    }

    /// Waits until the client has taken enough that at most ``maxQueued``
    /// bytes are queued; false if the call ended or the client stalled.
    func waitForRoom() -> Bool {
        var queued = stream.queuedBytes
        var lastProgress = ContinuousClock.now
        // Looked at every 2 ms while the client reads, backing off to every
        // 100 ms while it takes nothing.
        var pause: UInt32 = 2_000
        while queued > Self.maxQueued && !ended.load(ordering: .relaxed) {
            usleep(pause)
            let now = stream.queuedBytes
            if now < queued {
                lastProgress = .now
                pause = 2_000
            } else if ContinuousClock.now - lastProgress > stallTimeout {
                ended.store(true, ordering: .relaxed)
                stream.finish(GRPCStatus(code: 4, message: "snapshot: the client took nothing for \(stallTimeout)"))
                return false
            } else {
                pause = min(pause * 2, 100_000)
            }
            queued = now
        }
        return !ended.load(ordering: .relaxed)
    }

    /// Streams the backup (planned already: its size is known), then its SHA-256.
    func send(_ backup: BoltWriter, header: Etcdserverpb_ResponseHeader) {
        let chunk = MaintenanceService.snapshotChunk
        let size = backup.fileSize
        // As etcd counts: the database only; the checksum follows alone, with 0.
        var remaining = size
        var hasher = SHA256()
        var pending: [UInt8] = []
        pending.reserveCapacity(chunk)
        var encoded = 0
        // Sends `pending` as one chunk; false once the call is over.
        func flush() -> Bool {
            guard waitForRoom() else { return false }
            remaining = max(0, remaining - pending.count)
            var response = Etcdserverpb_SnapshotResponse()
            response.header = header
            response.blob = Data(pending)
            response.remainingBytes = UInt64(clamping: remaining)
            pending.removeAll(keepingCapacity: true)
            guard let bytes = try? response.serializedBytes() as [UInt8] else { return false }
            stream.send(bytes, paced: true)
            return true
        }
        func add(_ bytes: [UInt8]) -> Bool {
            var start = 0
            while start < bytes.count {
                let end = min(start + chunk - pending.count, bytes.count)
                pending += bytes[start..<end]
                start = end
                if pending.count == chunk, !flush() { return false }
            }
            return true
        }
        let complete = backup.write { piece in
            guard !ended.load(ordering: .relaxed) else { return false }
            encoded += piece.count
            // More than planned (a bug): stop before a chunk could go out.
            guard encoded <= size else { return false }
            hasher.update(data: piece)
            return add(piece)
        }
        guard complete, encoded == size else {
            // Stopped by the client, or the file's size differs from its
            // plan (a bug): no file that could pass its checks goes out.
            if !ended.load(ordering: .relaxed) { stream.finish(.internal("the snapshot could not be encoded")) }
            return
        }
        guard pending.isEmpty || flush() else { return }
        pending = Array(hasher.finalize())
        guard flush() else { return }
        stream.finish(.ok)
    }
}

extension Alarm.Kind {
    var proto: Etcdserverpb_AlarmType { self == .noSpace ? .nospace : .corrupt }
    /// etcd's alarm names.
    var name: String { self == .noSpace ? "NOSPACE" : "CORRUPT" }
}

extension Etcdserverpb_AlarmMember {
    init(_ alarm: Alarm) {
        self.init()
        memberID = alarm.member
        self.alarm = alarm.kind.proto
    }
}

/// Work admitted up to a limit, from any thread: ``enter()`` is false past
/// it; each admitted piece calls ``leave()`` once when done.
final class Admission: Sendable {
    let limit: Int
    private let count = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    func enter() -> Bool {
        if count.add(1, ordering: .relaxed).newValue <= limit { return true }
        leave()
        return false
    }

    func leave() { count.subtract(1, ordering: .relaxed) }
}
