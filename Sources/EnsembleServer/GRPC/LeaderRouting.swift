import EnsembleAPI
import KV
import Raft

/// How a member's services reach the leader for what only the leader can do
/// (proposals, lease renewals). Today a follower reaches a leader that runs in
/// the same process (`ensemble dev`); forwarding between processes takes the
/// peer gRPC client.
public struct LeaderRouting: Sendable {
    let node: NodeLoop<KVReplica>
    /// The leader's node when it runs in this process.
    let leaderInProcess: @Sendable (NodeID) -> NodeLoop<KVReplica>?

    public init(
        node: NodeLoop<KVReplica>,
        leaderInProcess: @escaping @Sendable (NodeID) -> NodeLoop<KVReplica>? = { _ in nil }
    ) {
        self.node = node
        self.leaderInProcess = leaderInProcess
    }

    /// Proposes on this node, or on the leader when this node is a follower and
    /// the leader runs in this process. Only refusals are retried elsewhere: a
    /// refused proposal certainly did not happen.
    func propose(_ entry: [UInt8]) async throws(NodeError) -> KVReplica.Result {
        let result: Result<KVReplica.Result, NodeError> = await withCheckedContinuation { continuation in
            propose(entry) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// ``propose(_:)`` with a callback (run once, on a node loop's thread).
    func propose(_ entry: [UInt8], reply: @escaping @Sendable (Result<KVReplica.Result, NodeError>) -> Void) {
        let node = self.node
        let leaderInProcess = self.leaderInProcess
        node.propose(entry) { result in
            guard case let .failure(.notLeader(leader)) = result, let other = leaderInProcess(leader), other !== node else {
                return reply(result)
            }
            other.propose(entry, reply: reply)
        }
    }

    /// Proposes a membership change on this node or the in-process leader.
    /// ``NodeLoop/proposeConfChange(checked:)`` on this member or the
    /// in-process leader (a leader in another process: `notLeader`, and the
    /// caller forwards the whole request).
    func proposeConfChange(checked check: @escaping NodeLoop<KVReplica>.ConfChangeCheck) async throws(NodeError) -> KVReplica.Result {
        do {
            return try await node.proposeConfChange(checked: check)
        } catch let NodeError.notLeader(leader) {
            guard let other = leaderInProcess(leader), other !== node else { throw NodeError.notLeader(leader: leader) }
            return try await other.proposeConfChange(checked: check)
        }
    }

    /// The leader this node knows, waiting up to ``NodeLoop/noLeaderWait``
    /// for an election to name one; `.none` if none comes.
    func knownLeader() async -> NodeID {
        let deadline = ContinuousClock.now + node.noLeaderWait
        while true {
            let leader = node.status.leader
            if leader != .none || ContinuousClock.now >= deadline { return leader }
            do { try await Task.sleep(for: .milliseconds(20)) } catch { return .none }
        }
    }

    /// The leader's published status (this node's or the in-process leader's).
    func leaderStatus() -> NodeStatus? {
        let status = node.status
        if status.role == .leader { return status }
        return leaderInProcess(status.leader)?.status
    }

    /// Runs `body` on the leader's machine. `body` returns nil when the
    /// machine it ran on does not lead (then the leader it names is tried).
    /// While no leader is known it waits for one, as proposals do
    /// (``NodeLoop/noLeaderWait``; etcd's lease renewals wait for a leader
    /// too); a leader whose machine does not lead yet (it is applying the
    /// entries of earlier terms first) is asked again until then.
    ///
    /// `confirmed`: `body` runs on this member only after a ReadIndex round
    /// shows that it still leads and it has applied everything committed
    /// (``NodeLoop/withMachineConfirmed(_:)``). A leader whose Raft loop is
    /// stuck (a stalled disk) or that is cut off from the majority then
    /// answers nothing rather than renewing leases the new leader will expire
    /// (etcd's ensureLeadership, 3.4.31).
    ///
    /// `holding`: leases whose keep-alives this is, and when they arrived.
    /// While the round confirms leadership, the leader does not revoke them
    /// (``KVReplica/keepAlivesArrived(_:waited:)``): slow acknowledgements
    /// must not make keep-alives that came in time late.
    func onLeader<T: Sendable>(
        confirmed: Bool = false, holding: (ids: [LeaseID], arrived: SuspendingClock.Instant)? = nil,
        _ body: @escaping @Sendable (KVReplica) -> T?
    ) async throws(NodeError) -> T {
        // Why the last attempt got no answer: what the caller hears at the deadline.
        var failure = NodeError.leaderChanged
        // `body` on `target`; nil when it did not lead after all. Throws only
        // what asking again cannot mend: a stopped member, the request timeout
        // (a stuck loop).
        func attempt(_ target: NodeLoop<KVReplica>) async throws(NodeError) -> T? {
            failure = .leaderChanged
            guard confirmed else { return await target.withMachine(body) ?? nil }
            let result: Result<T?, NodeError> = await withCheckedContinuation { continuation in
                Self.confirmedRound(on: target, holding: holding, body) { continuation.resume(returning: $0) }
            }
            switch result {
            case let .success(value): return value
            case .failure(.stopped): throw .stopped
            case .failure(.outcomeUnknown): throw .outcomeUnknown
            case let .failure(error):
                failure = error
                return nil
            }
        }
        let deadline = ContinuousClock.now + node.noLeaderWait
        if let result = try await attempt(node) { return result }
        while true {
            let leader = await knownLeader()
            guard leader != .none else { throw NodeError.noLeader }
            let target: NodeLoop<KVReplica>
            if leader == node.id {
                target = node
            } else {
                guard let other = leaderInProcess(leader), other !== node else { throw NodeError.notLeader(leader: leader) }
                target = other
            }
            if let result = try await attempt(target) { return result }
            guard ContinuousClock.now < deadline else { throw failure }
            do { try await Task.sleep(for: .milliseconds(10)) } catch { throw failure }
        }
    }
}

extension LeaderRouting {
    /// One attempt of ``onLeader(confirmed:holding:_:)`` with `confirmed`, on
    /// `target`, without a task: `reply` (run once, on a node's apply or loop
    /// thread or a timer's) gets what `body` returned — nil when `target`
    /// does not lead or its machine does not yet — or why the round failed.
    static func confirmedRound<T: Sendable>(
        on target: NodeLoop<KVReplica>, holding: (ids: [LeaseID], arrived: SuspendingClock.Instant)?,
        _ body: @escaping @Sendable (KVReplica) -> T?, reply: @escaping @Sendable (Result<T?, NodeError>) -> Void
    ) {
        // Only a leader can renew: a follower's round would be wasted.
        guard target.status.role == .leader else { return reply(.success(nil)) }
        guard let holding else { return target.withMachineConfirmed(body, reply: reply) }
        // Recorded before an overdue tick judges expiry, even behind a long apply.
        target.withMachineBeforeTick({
            $0.keepAlivesArrived(holding.ids, waited: (SuspendingClock.now - holding.arrived).inSeconds)
        }) { at in
            guard let at else { return reply(.failure(.stopped)) }
            target.withMachineConfirmed(body) { result in
                target.perform { $0.keepAlivesSettled(holding.ids, arrived: at) }
                reply(result)
            }
        }
    }

    /// Proposes `command` and returns what applying it produced, or the
    /// status etcd answers for the failure.
    func submit(_ command: Ensemble_V1_Command) async -> Result<KVStateMachine.Response, GRPCStatus> {
        await withCheckedContinuation { continuation in
            submit(command) { continuation.resume(returning: $0) }
        }
    }

    /// ``submit(_:)`` with a callback (run once, on a node loop's thread or here).
    func submit(_ command: Ensemble_V1_Command, reply: @escaping @Sendable (Result<KVStateMachine.Response, GRPCStatus>) -> Void) {
        let entry: [UInt8]
        do {
            entry = try KVReplica.encode(command)
        } catch {
            return reply(.failure(.internal("cannot encode the command")))
        }
        submit(entry: entry, reply: reply)
    }

    /// ``submit(_:reply:)`` for a command already encoded as a log entry.
    func submit(entry: [UInt8], reply: @escaping @Sendable (Result<KVStateMachine.Response, GRPCStatus>) -> Void) {
        propose(entry) { result in
            switch result {
            case let .failure(error): reply(.failure(KVService.status(error)))
            case let .success(.success(response)): reply(.success(response))
            case let .success(.failure(.kv(error))): reply(.failure(KVService.status(error)))
            case let .success(.failure(.lease(error))): reply(.failure(GRPCStatus(code: error.grpcCode, message: error.description)))
            case let .success(.failure(.member(error))): reply(.failure(GRPCStatus(code: error.grpcCode, message: error.description)))
            }
        }
    }
}

extension LeaderRouting {
    /// etcd's quota check before proposing a write that adds `bytes`: refused
    /// while NOSPACE is raised, and over the quota this member raises it
    /// (through the log, so every member refuses the same writes).
    func checkSpace(_ space: SpaceQuota, adding bytes: Int) async -> GRPCStatus? {
        await withCheckedContinuation { continuation in
            checkSpace(space, adding: bytes) { continuation.resume(returning: $0) }
        }
    }

    /// ``checkSpace(_:adding:)`` with a callback; answers at once unless the
    /// alarm must be raised first.
    func checkSpace(_ space: SpaceQuota, adding bytes: Int, then: @escaping @Sendable (GRPCStatus?) -> Void) {
        if space.isAlarmed { return then(KVService.status(KVError.noSpace)) }
        guard !space.allows(adding: bytes) else { return then(nil) }
        var command = Ensemble_V1_Command()
        command.alarm.action = .activate
        command.alarm.memberID = node.id
        command.alarm.alarm = .nospace
        submit(command) { _ in then(KVService.status(KVError.noSpace)) }
    }
}
