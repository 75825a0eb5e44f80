import EnsembleAPI
import KV
import Raft
import NIOCore
import SwiftProtobuf
import Foundation

/// etcd's Lease service. Grants and revocations go through the log; the
/// leader's lessor (``KVReplica`` leases) decides expiry, renews keep-alives
/// without the log and reports remaining TTLs, so keep-alive and TimeToLive
/// are served on the leader (a follower hands them to it).
public struct LeaseService: Sendable {
    let node: NodeLoop<KVReplica>
    let clusterID: UInt64
    let routing: LeaderRouting
    let space: SpaceQuota
    /// Reaches a leader in another process for keep-alives.
    let forwarder: LeaderForwarder?
    /// Grants ask for at least this TTL (seconds): a lease must outlive an
    /// election. etcd's is 1.5 election timeouts, rounded up
    /// (``minimumTTL(electionTicks:heartbeat:)``); the log's own floor is 2 s
    /// (`LeaseTable.minimumTTL`, the same on every member).
    let minimumTTL: Int64

    public init(
        node: NodeLoop<KVReplica>, clusterID: UInt64, space: SpaceQuota = SpaceQuota(),
        leaderInProcess: @escaping @Sendable (NodeID) -> NodeLoop<KVReplica>? = { _ in nil },
        forwarder: LeaderForwarder? = nil, minimumTTL: Int64 = LeaseTable.defaultMinimumTTL
    ) {
        self.minimumTTL = minimumTTL
        self.node = node
        self.space = space
        self.forwarder = forwarder
        self.clusterID = clusterID
        self.routing = LeaderRouting(node: node, leaderInProcess: leaderInProcess)
    }

    public func register(on router: inout GRPCRouter) {
        let service = self
        router.unary["/etcdserverpb.Lease/LeaseGrant"] = .task { await service.grant($0) }
        router.unary["/etcdserverpb.Lease/LeaseRevoke"] = .task { await service.revoke($0) }
        router.unary["/etcdserverpb.Lease/LeaseTimeToLive"] = .task { await service.timeToLive($0) }
        router.unary["/etcdserverpb.Lease/LeaseLeases"] = .task { await service.leases($0) }
        // One renewal as a unary call: what a follower forwards to a leader in
        // another process for each keep-alive on its streams. A lease that is
        // gone answers TTL 0, not an error, as etcd's does.
        router.unary[Self.keepAliveOncePath] = .direct { bytes, reply in
            guard let request = try? Etcdserverpb_LeaseKeepAliveRequest(serializedBytes: bytes) else {
                return reply(.failure(.invalidArgument("malformed LeaseKeepAliveRequest")))
            }
            service.keepAlive([request.id], forwarding: false) { round in
                // Answered (a failure too) where the response is written: on the event loop.
                reply(.success(GRPCResponse(result: {
                    let (answers, failure) = service.answers([request.id], round)
                    return answers.first.map { .success($0) } ?? .failure(failure ?? .internal("no answer"))
                })))
            }
        }
        router.streaming["/etcdserverpb.Lease/LeaseKeepAlive"] = { stream in
            // etcd's interceptor: a client that requires a leader is refused
            // while this member knows none.
            if stream.requiresLeader && service.node.status.leader == .none {
                return RefusedCall(stream, KVService.status(NodeError.noLeader))
            }
            return LeaseKeepAliveStream(service: service, stream: stream)
        }
    }

    var headers: HeaderSource {
        let status = node.status
        return HeaderSource(clusterID: clusterID, memberID: status.id, raftTerm: status.term)
    }

    func grant(_ bytes: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        guard let request = try? Etcdserverpb_LeaseGrantRequest(serializedBytes: bytes) else {
            return .failure(.invalidArgument("malformed LeaseGrantRequest"))
        }
        if request.ttl > LeaseTable.maxTTL {
            return .failure(GRPCStatus(code: LeaseError.ttlTooLarge.grpcCode, message: LeaseError.ttlTooLarge.description))
        }
        // A lease takes space too (etcd checks the quota for grants).
        if let refused = await routing.checkSpace(space, adding: 64) { return .failure(refused) }
        // The id is chosen here, before proposing, so every member grants the
        // same lease (etcd draws it from its request-id generator). Positive,
        // as etcd's clients print and parse lease ids.
        var command = Ensemble_V1_Command()
        command.leaseGrant.ttl = max(request.ttl, minimumTTL)
        command.leaseGrant.id = request.id != 0 ? request.id : Int64.random(in: 1...Int64.max)
        switch await routing.submit(command) {
        case let .success(.leaseGrant(lease, revision)):
            var response = Etcdserverpb_LeaseGrantResponse()
            response.header = headers.header(revision: revision)
            response.id = lease.id
            response.ttl = lease.grantedTTL
            return KVService.serialize(response)
        case .success:
            return .failure(.internal("unexpected response"))
        case let .failure(status):
            return .failure(status)
        }
    }

    func revoke(_ bytes: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        guard let request = try? Etcdserverpb_LeaseRevokeRequest(serializedBytes: bytes) else {
            return .failure(.invalidArgument("malformed LeaseRevokeRequest"))
        }
        var command = Ensemble_V1_Command()
        command.leaseRevoke.id = request.id
        switch await routing.submit(command) {
        case let .success(.leaseRevoke(revision)):
            var response = Etcdserverpb_LeaseRevokeResponse()
            response.header = headers.header(revision: revision)
            return KVService.serialize(response)
        case .success:
            return .failure(.internal("unexpected response"))
        case let .failure(status):
            return .failure(status)
        }
    }

    func timeToLive(_ bytes: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        guard let request = try? Etcdserverpb_LeaseTimeToLiveRequest(serializedBytes: bytes) else {
            return .failure(.invalidArgument("malformed LeaseTimeToLiveRequest"))
        }
        let id = request.id
        let answer: (remaining: Int64, granted: Int64, keys: [[UInt8]], revision: Int64)
        do {
            answer = try await routing.onLeader(confirmed: true) { replica in
                replica.timeToLive(id).map { ($0.remaining, $0.granted, $0.keys, replica.machine.store.revision) }
            }
        } catch {
            return .failure(KVService.status(error))
        }
        var response = Etcdserverpb_LeaseTimeToLiveResponse()
        response.header = headers.header(revision: answer.revision)
        response.id = id
        response.ttl = answer.remaining
        response.grantedTtl = answer.granted
        if request.keys { response.keys = answer.keys.map { Data($0) } }
        return KVService.serialize(response)
    }

    func leases(_ bytes: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        guard let listed = await node.withMachine({ ($0.machine.leases.ids, $0.machine.store.revision) }) else {
            return .failure(KVService.status(NodeError.stopped))
        }
        var response = Etcdserverpb_LeaseLeasesResponse()
        response.header = headers.header(revision: listed.1)
        response.leases = listed.0.map { id in
            var status = Etcdserverpb_LeaseStatus()
            status.id = id
            return status
        }
        return KVService.serialize(response)
    }

    static let keepAliveOncePath = "/ensemble.internal.Lease/KeepAliveOnce"
    /// How long a keep-alive waits out a change of leader (etcd: its request timeout).
    static let renewPatience: Duration = .seconds(5)
    /// How long a keep-alive for an expired lease waits for its revocation
    /// (proposed within half a second of expiry) before it is answered TTL 0:
    /// longer than another keep-alive's hold on the lease
    /// (``KVReplica/keepAliveHold``), which may yet renew it.
    static let revocationWait: Duration = .seconds(8)
    /// The same for a keep-alive a follower forwarded: still past the hold,
    /// but under the forwarder's own 8 s timeout, which otherwise fired first
    /// and ended the client's whole keep-alive stream with "request timed
    /// out" instead of the TTL 0 it is owed (review finding).
    static let forwardedRevocationWait: Duration = .milliseconds(7_500)

    /// A forwarded renewal that failed because leadership moved or the leader
    /// could not be reached: worth asking the (next) leader again.
    static func isLeaderChange(_ status: GRPCStatus) -> Bool {
        status.code == 14 && (status.message == "etcdserver: no leader" || status.message == "etcdserver: leader changed"
            || status.message.hasPrefix("etcdserver: leader unreachable") || status.message == LeaderForwarder.unreachable.message)
    }

    /// Keep-alives for `ids`, answered in order: on the leader all in one
    /// confirmed round (a client's keep-alives for many leases share one
    /// stream, and clientv3 resends unanswered ones, so an id may repeat: it
    /// is renewed once); a follower forwards the distinct ids to the leader at
    /// once. The answers for a prefix of `ids`, and why the rest got none.
    ///
    /// The member the client called (`forwarding`) rides out a change of
    /// leader as etcd's LeaseRenew does: while no leader is known, or the
    /// one it asked has stepped down, it tries again every 50 ms for up to
    /// ``renewPatience`` (a keep-alive stream that ended there would make
    /// clientv3 give up a require-leader session for good).
    func keepAlive(
        _ ids: [LeaseID], forwarding: Bool = true, arrived: SuspendingClock.Instant = .now,
        deadlines: (patience: ContinuousClock.Instant, revocation: ContinuousClock.Instant)? = nil
    ) async -> (answers: [[UInt8]], failure: GRPCStatus?) {
        let distinct = Self.distinct(ids)
        // (A retry of the rest of a round keeps the round's deadlines.)
        let deadline = deadlines?.patience ?? ContinuousClock.now + Self.renewPatience
        func mayRetry() async -> Bool {
            guard forwarding, ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(50))
            return true
        }
        var renewed: Renewed?
        // Leases alive when the keep-alive came are renewed though it waited
        // behind a long apply (a big delete) past their deadline.
        let revocationDeadline = deadlines?.revocation
            ?? ContinuousClock.now + (forwarding ? Self.revocationWait : Self.forwardedRevocationWait)
        while renewed == nil {
            do {
                renewed = try await routing.onLeader(confirmed: true, holding: (distinct, arrived), Self.renewal(distinct, arrived: arrived))
                // An expired lease answers once its revocation has applied
                // (or a new leader has taken it over, and renews it).
                if let pending = renewed, pending.ttls.contains(KVReplica.revocationPending),
                    ContinuousClock.now < revocationDeadline
                {
                    renewed = nil
                    try? await Task.sleep(for: .milliseconds(50))
                } else if let done = renewed, !done.clears.isEmpty, let clear = KVReplica.clearingCheckpoints(done.clears) {
                    // Answered once the clear has applied: proposed in the
                    // next tick instead, it was lost to a leadership
                    // transfer (every graceful restart) or a crash, and the
                    // next leader expired the lease early (review finding).
                    do {
                        _ = try await routing.propose(clear)
                    } catch {
                        renewed = nil
                        if await mayRetry() { continue }
                        return ([], KVService.status(error))
                    }
                }
            } catch let NodeError.notLeader(leader) where forwarding && leader != .none {
                let (answers, failure) = await forward(ids, distinct: distinct, to: leader)
                if let failure, Self.isLeaderChange(failure), await mayRetry() {
                    if answers.isEmpty { continue }
                    // Answered in part (the leader changed between the
                    // forwarded renewals): the rest is asked again, not
                    // failed — "no leader" would make clientv3 close a
                    // require-leader keep-alive for good (review finding).
                    let rest = await keepAlive(
                        Array(ids.dropFirst(answers.count)), forwarding: forwarding, arrived: arrived,
                        deadlines: (deadline, revocationDeadline))
                    return (answers + rest.answers, rest.failure)
                }
                return (answers, failure)
            } catch where [NodeError.noLeader, .leaderChanged, .notLeader(leader: .none)].contains(error) {
                if await mayRetry() { continue }
                return ([], KVService.status(error))
            } catch {
                return ([], KVService.status(error))
            }
        }
        guard let renewed else { return ([], .internal("no answer")) }
        return answers(ids, distinct: distinct, renewed: renewed)
    }

    /// ``keepAlive(_:forwarding:arrived:)`` with a callback. The common
    /// case — this member leads and renews every lease in one confirmed
    /// round — takes no task, so renewals never wait for the cooperative
    /// pool, and answers `.renewed` from the apply thread (the caller encodes
    /// on its event loop); anything else (a follower, a change of leader, an
    /// expired lease) takes the full path as a task.
    func keepAlive(_ ids: [LeaseID], forwarding: Bool = true, reply: @escaping @Sendable (KeepAliveRound) -> Void) {
        let arrived = SuspendingClock.now
        let distinct = Self.distinct(ids)
        let service = self
        let fullPath: @Sendable () -> Void = {
            Task {
                let (answers, failure) = await service.keepAlive(ids, forwarding: forwarding, arrived: arrived)
                reply(.answered(answers: answers, failure: failure))
            }
        }
        guard node.status.role == .leader else { return fullPath() }
        LeaderRouting.confirmedRound(on: node, holding: (distinct, arrived), Self.renewal(distinct, arrived: arrived)) { result in
            switch result {
            case let .success(renewed?) where !renewed.clears.isEmpty:
                // A checkpoint to clear first (a task waits for it).
                fullPath()
            case let .success(renewed?) where !renewed.ttls.contains(KVReplica.revocationPending):
                reply(.renewed(distinct: distinct, renewed, pending: []))
            case let .success(renewed?) where renewed.ttls.contains { $0 != KVReplica.revocationPending }:
                // Some expired, their revocation not applied yet: the others
                // are answered now, not after that wait (review finding).
                let split = zip(distinct, renewed.ttls)
                let done = split.filter { $0.1 != KVReplica.revocationPending }
                let pending = split.filter { $0.1 == KVReplica.revocationPending }.map(\.0)
                reply(.renewed(distinct: done.map(\.0), (done.map(\.1), renewed.revision, []), pending: pending))
            case let .failure(error) where error == .stopped || error == .outcomeUnknown:
                reply(.answered(answers: [], failure: KVService.status(error)))
            default:
                fullPath()
            }
        }
    }

    /// What a round of keep-alives came to.
    enum KeepAliveRound: Sendable {
        /// The leader renewed these leases; answers are still to be encoded.
        /// `pending` expired and wait for their revocation (another round
        /// answers them).
        case renewed(distinct: [LeaseID], Renewed, pending: [LeaseID])
        /// The answers for a prefix of the keep-alives, and why the rest got none.
        case answered(answers: [[UInt8]], failure: GRPCStatus?)
    }

    /// The TTLs a leader granted again to a round's distinct leases, and its
    /// revision. `clears`: renewed leases whose log still holds a remaining
    /// TTL from a checkpoint; a new leader would start them from it, so the
    /// renewal is answered only once a clearing checkpoint has applied (as
    /// etcd's Renew waits for its checkpoint).
    typealias Renewed = (ttls: [Int64], revision: Int64, clears: [LeaseID])

    /// The answers to `ids` that `round` makes.
    func answers(_ ids: [LeaseID], _ round: KeepAliveRound) -> (answers: [[UInt8]], failure: GRPCStatus?) {
        switch round {
        case let .renewed(distinct, renewed, pending):
            answers(pending.isEmpty ? ids : ids.filter(Set(distinct).contains), distinct: distinct, renewed: renewed)
        case let .answered(answers, failure): (answers, failure)
        }
    }

    /// `ids` without repeats, in order (clientv3 resends unanswered keep-alives).
    static func distinct(_ ids: [LeaseID]) -> [LeaseID] {
        var seen: Set<LeaseID> = []
        return ids.filter { seen.insert($0).inserted }
    }

    /// Renews `distinct` on a leader's machine; nil where it does not lead.
    static func renewal(_ distinct: [LeaseID], arrived: SuspendingClock.Instant) -> @Sendable (KVReplica) -> Renewed? {
        { replica in
            var ttls: [Int64] = []
            ttls.reserveCapacity(distinct.count)
            let waited = (SuspendingClock.now - arrived).inSeconds
            var clears: [LeaseID] = []
            for id in distinct {
                guard let ttl = replica.renew(id, waited: waited) else { return nil }
                ttls.append(ttl)
                if ttl > 0, replica.renewalClears(id) { clears.append(id) }
            }
            return (ttls, replica.machine.store.revision, clears)
        }
    }

    /// One answer per keep-alive in `ids`, from what `distinct` were renewed to.
    func answers(_ ids: [LeaseID], distinct: [LeaseID], renewed: Renewed) -> (answers: [[UInt8]], failure: GRPCStatus?) {
        let header = headers.header(revision: renewed.revision)
        let ttls = Dictionary(uniqueKeysWithValues: zip(distinct, renewed.ttls))
        var answers: [[UInt8]] = []
        answers.reserveCapacity(ids.count)
        for id in ids {
            var response = Etcdserverpb_LeaseKeepAliveResponse()
            response.header = header
            response.id = id
            response.ttl = max(ttls[id] ?? 0, 0)
            guard case let .success(bytes) = KVService.serialize(response) else { return (answers, .internal("cannot encode")) }
            answers.append(bytes)
        }
        return (answers, nil)
    }

    /// Keep-alives handed to a leader in another process, all at once, each
    /// as ``keepAliveOncePath``; answered in request order up to the first
    /// that failed.
    private func forward(_ ids: [LeaseID], distinct: [LeaseID], to leader: NodeID) async -> (answers: [[UInt8]], failure: GRPCStatus?) {
        guard let forwarder else { return ([], KVService.status(NodeError.notLeader(leader: leader))) }
        let results = await withTaskGroup(of: (LeaseID, Result<[UInt8], GRPCStatus>).self) { group in
            for id in distinct {
                group.addTask {
                    var request = Etcdserverpb_LeaseKeepAliveRequest()
                    request.id = id
                    guard let bytes = try? request.serializedBytes() as [UInt8],
                        let forwarded = await forwarder.forward(Self.keepAliveOncePath, bytes, to: leader)
                    else { return (id, .failure(KVService.status(NodeError.notLeader(leader: leader)))) }
                    return (id, forwarded)
                }
            }
            var results: [LeaseID: Result<[UInt8], GRPCStatus>] = [:]
            for await (id, result) in group { results[id] = result }
            return results
        }
        var answers: [[UInt8]] = []
        for id in ids {
            switch results[id] {
            case let .success(answer)?:
                // The header is the serving member's, as etcd's follower fills
                // it (the revision is the leader's, a moment newer at most).
                guard var response = try? Etcdserverpb_LeaseKeepAliveResponse(serializedBytes: answer) else {
                    return (answers, .internal("malformed answer from the leader"))
                }
                response.header = headers.header(revision: response.header.revision)
                guard case let .success(bytes) = KVService.serialize(response) else { return (answers, .internal("cannot encode")) }
                answers.append(bytes)
            case let .failure(status)?: return (answers, status)
            case nil: return (answers, .internal("no answer"))
            }
        }
        return (answers, nil)
    }
}

/// One `LeaseKeepAlive` call: every request is answered. The requests that
/// arrive in one read are renewed together in one round (clientv3 sends the
/// keep-alives of all a client's leases on one stream, and resends
/// unanswered ones every 500 ms). Rounds overlap, up to ``maxRounds``: a
/// keep-alive that arrives while another round waits (a slow confirmation,
/// an expired lease's revocation) starts its own at once, so its arrival is
/// recorded and its lease held from then — waiting for the earlier round
/// could make a keep-alive that came in time late (review finding). Answers
/// carry their lease id; clients do not need them in order.
final class LeaseKeepAliveStream: GRPCStreamReceiver {
    let service: LeaseService
    let stream: GRPCServerStream
    /// Requests waiting for a round, in arrival order.
    private var queue: [LeaseID] = []
    /// Rounds out now.
    private var rounds = 0
    /// A round is due at the end of this read.
    private var scheduled = false
    private var done = false
    /// The client half-closed: the call ends (OK) once every request it sent
    /// is answered, as etcd's loop answers each before reading the next.
    private var clientDone = false

    init(service: LeaseService, stream: GRPCServerStream) {
        self.service = service
        self.stream = stream
    }

    /// Keep-alives waiting for an answer on one call: etcd reads the next only
    /// after answering one; a client that sends far more than its leases
    /// before its rounds end is refused.
    static let maxQueued = 100_000
    /// Rounds one call may have out at once.
    static let maxRounds = 8

    func received(_ message: [UInt8]) {
        guard !done else { return }
        guard let request = try? Etcdserverpb_LeaseKeepAliveRequest(serializedBytes: message) else {
            done = true
            stream.finish(.invalidArgument("malformed LeaseKeepAliveRequest"))
            return
        }
        guard queue.count < Self.maxQueued else {
            done = true
            queue = []
            stream.finish(GRPCStatus(code: 8, message: "too many keep-alives waiting for an answer"))
            return
        }
        queue.append(request.id)
        guard !scheduled else { return }
        // After the rest of this read: its keep-alives share the round.
        scheduled = true
        let bound = NIOLoopBoundBox(self, eventLoop: stream.eventLoop)
        stream.eventLoop.execute {
            bound.value.scheduled = false
            bound.value.next()
        }
    }

    private func next() {
        guard !done else { return }
        guard !queue.isEmpty else {
            if clientDone && rounds == 0 {
                done = true
                stream.finish(.ok)
            }
            return
        }
        guard rounds < Self.maxRounds else { return }
        rounds += 1
        let ids = queue
        queue = []
        let service = self.service
        let loop = stream.eventLoop
        let bound = NIOLoopBoundBox(self, eventLoop: loop)
        service.keepAlive(ids) { round in
            // Encoded on the event loop, not the apply thread.
            loop.execute {
                let receiver = bound.value
                receiver.rounds -= 1
                guard !receiver.done else { return }
                // Keep-alives of expired leases go round again, to wait there.
                if case let .renewed(_, _, pending) = round, !pending.isEmpty { receiver.queue += ids.filter(Set(pending).contains) }
                let result = service.answers(ids, round)
                // What was renewed is answered even when the rest failed.
                for bytes in result.answers { receiver.stream.send(bytes) }
                if let failure = result.failure {
                    receiver.done = true
                    receiver.stream.finish(failure)
                }
                receiver.next()
            }
        }
    }

    func clientFinished() {
        clientDone = true
        next()
    }

    func closed() {
        done = true
        queue = []
    }
}

extension LeaseService {
    /// etcd's minimum lease TTL: `(3 * electionTicks) / 2` heartbeats (whole
    /// ticks, as etcd divides), in seconds rounded up, and never below the
    /// log's floor.
    /// In whole nanoseconds, as Go's Duration: in floating point, 10 ×
    /// 0.3 s came to 3.0000000000000004 and rounded up to 4 (etcd: 3).
    public static func minimumTTL(electionTicks: Int, heartbeat: Duration) -> Int64 {
        let beat = heartbeat.components
        let (whole, overflowA) = beat.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (nanoseconds, overflowB) = Int64((3 * electionTicks) / 2)
            .multipliedReportingOverflow(by: whole + beat.attoseconds / 1_000_000_000)
        guard !overflowA, !overflowB else { return LeaseTable.maxTTL }
        let seconds = nanoseconds / 1_000_000_000 + (nanoseconds % 1_000_000_000 > 0 ? 1 : 0)
        return min(max(LeaseTable.defaultMinimumTTL, seconds), LeaseTable.maxTTL)
    }
}
