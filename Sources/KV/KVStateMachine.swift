/// The replicated state machine of Ensemble's key–value API: the multi-version
/// store plus the lease table, changed only by ``apply(_:)`` with commands taken
/// from the Raft log in order. Every member applying the same commands reaches
/// the same state and emits the same events (watchers are fed from them).
///
/// Not thread-safe: owned by the apply loop.
public final class KVStateMachine {
    public let store = MVCCStore()
    public internal(set) var leases = LeaseTable()
    /// Raised alarms (``Alarm``); NOSPACE refuses writes that add data.
    public internal(set) var alarms: Set<Alarm> = []
    /// The member directory (``MemberTable``).
    public internal(set) var members = MemberTable()

    public init() {
        store.leaseExists = { [unowned self] id in self.leases.contains(id) }
    }

    /// A command as it travels through the log.
    public enum Command: Sendable, Hashable {
        case put(PutRequest)
        case deleteRange(DeleteRangeRequest)
        case txn(TxnRequest)
        case compact(revision: Int64)
        /// The proposer picked a nonzero id.
        case leaseGrant(id: LeaseID, ttl: Int64)
        case leaseRevoke(id: LeaseID)
        case leaseCheckpoint([LeaseCheckpoint])
        /// Raises (`activate`) or clears an alarm.
        case alarm(activate: Bool, Alarm)
        /// A membership change Raft accepted.
        case member(MemberChange)
        /// A member publishes its name and client URLs.
        case memberAttributes(id: UInt64, name: String, clientURLs: [String])
        /// MemberUpdate: a member's new peer URLs.
        case memberPeerURLs(id: UInt64, peerURLs: [String])
    }

    public struct LeaseCheckpoint: Sendable, Hashable {
        public var id: LeaseID
        public var remainingTTL: Int64
        public init(id: LeaseID, remainingTTL: Int64) {
            self.id = id
            self.remainingTTL = remainingTTL
        }
    }

    public enum Response: Sendable, Hashable {
        case put(PutResponse)
        case deleteRange(DeleteRangeResponse)
        case txn(TxnResponse)
        case compact(revision: Int64)
        case leaseGrant(Lease, revision: Int64)
        case leaseRevoke(revision: Int64)
        case leaseCheckpoint
        /// What etcd's apply answers an alarm change with: the alarm raised
        /// (whether new or not), or the alarm cleared ([] if it was not raised).
        case alarms([Alarm])
        /// The members after the change.
        case members([Member])
    }

    public enum Failure: Error, Sendable, Hashable, CustomStringConvertible {
        case kv(KVError)
        case lease(LeaseError)
        case member(MemberError)

        public var description: String {
            switch self {
            case let .kv(error): error.description
            case let .lease(error): error.description
            case let .member(error): error.description
            }
        }
    }

    /// Applies one command; returns its response (or the error the client gets)
    /// and the events it produced, in revision order.
    public func apply(_ command: Command) -> (Result<Response, Failure>, [Event]) {
        if !alarms.isEmpty {
            if refusedForCorruption(command) { return (.failure(.kv(.corrupt)), []) }
            if refusedForSpace(command) { return (.failure(.kv(.noSpace)), []) }
        }
        do {
            switch command {
            case let .member(change):
                return (.success(.members(applyMember(change))), [])
            case let .memberAttributes(id, name, clientURLs):
                return (.success(.members(try applyAttributes(id: id, name: name, clientURLs: clientURLs))), [])
            case let .memberPeerURLs(id, peerURLs):
                return (.success(.members(try applyPeerURLs(id: id, peerURLs: peerURLs))), [])
            case let .alarm(activate, alarm):
                if activate {
                    alarms.insert(alarm)
                    return (.success(.alarms([alarm])), [])
                }
                return (.success(.alarms(alarms.remove(alarm).map { [$0] } ?? [])), [])
            case let .put(request):
                let (response, events) = try store.put(request)
                track(events)
                return (.success(.put(response)), events)
            case let .deleteRange(request):
                let (response, events) = try store.deleteRange(request)
                track(events)
                return (.success(.deleteRange(response)), events)
            case let .txn(request):
                let (response, events) = try store.txn(request)
                track(events)
                return (.success(.txn(response)), events)
            case let .compact(revision):
                try store.compact(revision)
                return (.success(.compact(revision: store.revision)), [])
            case let .leaseGrant(id, ttl):
                let lease = try grant(id: id, ttl: ttl)
                return (.success(.leaseGrant(lease, revision: store.revision)), [])
            case let .leaseRevoke(id):
                let events = try revoke(id: id)
                return (.success(.leaseRevoke(revision: store.revision)), events)
            case let .leaseCheckpoint(checkpoints):
                for checkpoint in checkpoints {
                    leases.checkpoint(id: checkpoint.id, remainingTTL: checkpoint.remainingTTL)
                }
                return (.success(.leaseCheckpoint), [])
            }
        } catch let error as KVError {
            return (.failure(.kv(error)), [])
        } catch let error as LeaseError {
            return (.failure(.lease(error)), [])
        } catch let error as MemberError {
            return (.failure(.member(error)), [])
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
    }

    private func grant(id: LeaseID, ttl: Int64) throws(LeaseError) -> Lease {
        try leases.grant(id: id, ttl: ttl)
    }

    /// Revokes a lease and deletes its keys in one write transaction (one revision).
    private func revoke(id: LeaseID) throws(LeaseError) -> [Event] {
        let keys = try leases.revoke(id: id)
        guard !keys.isEmpty else { return [] }
        let result = try? store.write { (context: inout MVCCStore.WriteContext) throws(KVError) in
            for key in keys { _ = store.applyDelete(DeleteRangeRequest(key: key), &context) }
        }
        let events = result?.1 ?? []
        track(events)
        return events
    }

    /// Keeps key–lease attachments in step with the changes.
    private func track(_ events: [Event]) {
        for event in events {
            switch event.kind {
            case .put: leases.attach(event.kv.key, to: event.kv.lease)
            case .delete: leases.detach(event.kv.key)
            }
        }
    }
}
