import EnsembleAPI
import Foundation
import KV
import Raft
import SwiftProtobuf

/// The key–value store as a node replicates it: log entries are serialized
/// `ensemble.v1.Command`s, applied to a ``KVStateMachine``; every applied
/// change is published to the member's ``WatchHub``, whose deliveries go to
/// `onWatchDeliveries` (the watch streams).
public final class KVReplica: ReplicatedStateMachine {
    public let machine = KVStateMachine()
    public let watches = WatchHub()
    /// Published after every apply for the API services' quota checks.
    public let space: SpaceQuota
    /// The applied revision and alarms, for readers off the apply thread.
    public let summary = AppliedSummary()
    /// Receives watch responses produced by applying entries, in order.
    public var onWatchDeliveries: ([WatchDelivery]) -> Void = { _ in }
    /// Hears the member directory after every change (and after a restore):
    /// the server points its peer transport at the members' addresses.
    public var onMembersChanged: ([Member]) -> Void = { _ in }

    // Leader-only lease clock (KVReplica+Leases.swift).
    var lessor = Lessor()
    var leading = false
    /// Revocations proposed and not yet applied, with when they were proposed
    /// (re-proposed if the entry was lost).
    var revoking: [LeaseID: Double] = [:]
    /// Leases whose stale checkpoint a keep-alive made obsolete; cleared by the next tick.
    var staleCheckpoints: Set<LeaseID> = []
    /// Leases a checkpoint round proposed a remaining TTL for, until that
    /// entry applies: a keep-alive meanwhile must clear it too (the round's
    /// entry lands after the renewal and would otherwise stand).
    var checkpointsInFlight: Set<LeaseID> = []
    /// Revocations the leader may still propose now, and when it last counted.
    var revokeTokens = 0.0
    var lastRevokeTick = 0.0
    /// Expired leases not yet proposed, the longest expired last (popped first).
    var expiredQueue: [LeaseID] = []
    /// Keep-alives waiting for this leader to confirm its leadership before
    /// they renew: when each arrived, by lease (``keepAlivesArrived(_:)``).
    var arrivingKeepAlives: [LeaseID: [Double]] = [:]
    /// Seconds on a monotonic clock; injected by tests.
    let now: @Sendable () -> Double
    /// Grace added to every lease when this member becomes leader, covering the
    /// election (etcd extends leases by the election timeout on promotion).
    let promotionGrace: Double

    public init(
        space: SpaceQuota = SpaceQuota(), checkpointInterval: Double = 5, promotionGrace: Double = 2,
        now: @escaping @Sendable () -> Double = KVReplica.monotonicSeconds
    ) {
        self.space = space
        self.now = now
        self.promotionGrace = promotionGrace
        lessor.checkpointInterval = checkpointInterval
        summary.publish(revision: machine.store.revision, alarms: machine.alarms)
    }

    /// Seconds since an arbitrary fixed point of a monotonic clock that stops
    /// while the machine is suspended (Go's, which etcd's lessor uses): a
    /// laptop that sleeps does not wake to every lease expired.
    public static let monotonicSeconds: @Sendable () -> Double = {
        (SuspendingClock.now - epoch).inSeconds
    }
    private static let epoch = SuspendingClock.now

    public typealias Result = Swift.Result<KVStateMachine.Response, KVStateMachine.Failure>

    /// Serializes a command for the log.
    public static func encode(_ command: Ensemble_V1_Command) throws -> [UInt8] {
        try command.serializedBytes() as [UInt8]
    }

    public func apply(_ data: [UInt8], index: UInt64) -> Result {
        let command: KVStateMachine.Command
        do {
            command = try Self.decode(data)
        } catch let error as KVError {
            return .failure(.kv(error))
        } catch {
            // An entry that does not decode was never a valid proposal; every
            // member rejects it the same way, so state stays identical.
            return .failure(.kv(.keyNotFound))
        }
        let (result, events) = machine.apply(command)
        leaseApplied(command, result)
        publishSpace()
        if case .success(.members(let members)) = result { onMembersChanged(members) }
        if !events.isEmpty {
            let deliveries = watches.publish(events, revision: machine.store.revision)
            if !deliveries.isEmpty { onWatchDeliveries(deliveries) }
        }
        return result
    }

    /// A MemberUpdate (`member_peer_urls`, field 11: its tag byte leads the
    /// encoded command, as fields are written in number order).
    public static func affectsMembershipChecks(_ data: [UInt8]) -> Bool {
        data.first == 11 << 3 | 2
    }

    static func decode(_ data: [UInt8]) throws -> KVStateMachine.Command {
        if let put = PutWire.fromCommand(data) { return .put(put) }
        let command = try Ensemble_V1_Command(serializedBytes: data)
        switch command.command {
        case let .put(p)?: return .put(PutRequest(p))
        case let .deleteRange(d)?: return .deleteRange(DeleteRangeRequest(d))
        case let .txn(t)?: return .txn(try TxnRequest(t))
        case let .compaction(c)?: return .compact(revision: c.revision)
        case let .leaseGrant(g)?: return .leaseGrant(id: g.id, ttl: g.ttl)
        case let .leaseRevoke(r)?: return .leaseRevoke(id: r.id)
        case let .leaseCheckpoints(c)?:
            return .leaseCheckpoint(c.checkpoints.map { .init(id: $0.id, remainingTTL: $0.remainingTtl) })
        case let .memberAttributes(m)?:
            return .memberAttributes(id: m.id, name: m.name, clientURLs: m.clientUrls)
        case let .memberPeerUrls(m)?:
            return .memberPeerURLs(id: m.id, peerURLs: m.peerUrls)
        case let .alarm(a)?:
            let kind: Alarm.Kind
            switch a.alarm {
            case .nospace: kind = .noSpace
            case .corrupt: kind = .corrupt
            default: throw KVError.keyNotFound
            }
            switch a.action {
            case .activate: return .alarm(activate: true, Alarm(member: a.memberID, kind: kind))
            case .deactivate: return .alarm(activate: false, Alarm(member: a.memberID, kind: kind))
            default: throw KVError.keyNotFound
            }
        case .range?, nil:
            throw KVError.keyNotFound
        }
    }

    public func read(_ query: RangeRequest) -> Swift.Result<RangeResponse, KVError> {
        do {
            return .success(try machine.store.range(query))
        } catch {
            return .failure(error)
        }
    }

    public func snapshot() -> [UInt8] { machine.snapshot() }

    /// The store's retained history (etcd's db size).
    public var approximateStateBytes: Int? { machine.store.approximateBytes }

    public func freezeSnapshot() -> @Sendable () -> [UInt8] {
        let frozen = machine.freeze()
        return { frozen.encode() }
    }

    public func freezeSnapshotStream() -> FrozenSnapshot {
        let frozen = machine.freeze()
        return FrozenSnapshot(count: { frozen.encodedCount() }, write: { chunk, sink in frozen.encode(chunk: chunk, sink) })
    }

    public func restore(_ data: [UInt8]) throws {
        try machine.restore(data)
        publishSpace()
        onMembersChanged(machine.members.sorted)
        // Events between the old state and the snapshot were never published.
        watches.resyncAll()
        if leading { lessor.promote(machine.leases, now: now(), extra: promotionGrace) }
    }

    private func publishSpace() {
        space.publish(used: machine.store.approximateBytes, alarmed: machine.alarms.contains { $0.kind == .noSpace })
        summary.publish(revision: machine.store.revision, alarms: machine.alarms)
    }

    /// A membership change: the directory follows what Raft accepted; the
    /// change's context carries the member's record (and at bootstrap the
    /// cluster id).
    public func applyConfChange(_ change: ConfChange, accepted: Bool, index: UInt64) -> Result? {
        guard accepted else {
            switch change.kind {
            case .remove: return .failure(.member(.notFound))
            case .promote: return .failure(.member(.notLearner))
            case .addVoter, .addLearner: return .failure(.member(.idExists))
            }
        }
        let context = (try? Ensemble_V1_MemberContext(serializedBytes: change.context)) ?? Ensemble_V1_MemberContext()
        let record = context.hasMember
            ? Member(id: change.node, name: context.member.name, peerURLs: context.member.peerUrls,
                     clientURLs: context.member.clientUrls)
            : nil
        let kind: MemberChange.Kind
        switch change.kind {
        case .addVoter, .promote: kind = .addVoter
        case .addLearner: kind = .addLearner
        case .remove: kind = .remove
        }
        let (result, _) = machine.apply(.member(MemberChange(kind: kind, id: change.node, record: record, clusterID: context.clusterID)))
        if case .success(.members(let members)) = result { onMembersChanged(members) }
        return result
    }

    /// The context a membership change carries for `member`.
    public static func memberContext(_ member: Member, clusterID: UInt64 = 0) -> [UInt8] {
        var context = Ensemble_V1_MemberContext()
        context.clusterID = clusterID
        context.member.id = member.id
        context.member.name = member.name
        context.member.peerUrls = member.peerURLs
        context.member.clientUrls = member.clientURLs
        return (try? context.serializedBytes() as [UInt8]) ?? []
    }
}
