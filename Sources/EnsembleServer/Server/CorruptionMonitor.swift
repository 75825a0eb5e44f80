import EnsembleAPI
import KV
import Logging
import Raft
import SwiftProtobuf

/// Runs ``CorruptionCheck`` every `interval` while this member leads
/// (`--experimental-corrupt-check-time`), asking the other members over the
/// peer connections the leader forwarder keeps, and raises CORRUPT through
/// the log for a member the answers convict.
struct CorruptionMonitor: Sendable {
    let interval: Duration
    let node: NodeLoop<KVReplica>
    let routing: LeaderRouting
    let forwarder: LeaderForwarder
    let logger: Logger

    func run() async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            guard node.status.role == .leader else { continue }
            await checkOnce()
        }
    }

    /// One check, as etcd's `checkHashKV`; returns what it found.
    @discardableResult
    func checkOnce() async -> CorruptionCheck.Finding? {
        let start = node.status
        let me = start.id
        guard let before = await ownReport(me), let cluster = await clusterID() else { return nil }
        let peers = await reports(at: before.revision, excluding: me, cluster: cluster)
        // Everything committed by now applied first (etcd's read barrier): a
        // follower may have applied what this leader has committed but not
        // yet applied, and would look ahead of it.
        guard let after = await ownReport(me, confirmed: true) else { return nil }
        // Leading all along, in one term: a new leader's followers may
        // have applied more than this member ever will in its term.
        let end = node.status
        guard !Task.isCancelled, end.role == .leader, end.term == start.term, start.role == .leader else { return nil }
        guard let finding = CorruptionCheck.verdict(leader: before, after: after, peers: peers) else {
            logger.debug("corruption check: members agree", metadata: ["revision": "\(before.revision)", "peers": "\(peers.count)"])
            return nil
        }
        logger.error(
            "corruption check: member \(hex(finding.member)) has inconsistent data: \(finding.reason); raising the CORRUPT alarm")
        var command = Ensemble_V1_Command()
        command.alarm.action = .activate
        // Member 0, as etcd 3.4.23 raises it: a difference does not show
        // whose data is wrong (the leader's own may be), and an alarm naming
        // a healthy follower would invite removing it (etcd PR 14828). The
        // log above names the member that differed.
        command.alarm.memberID = 0
        command.alarm.alarm = .corrupt
        if case let .failure(status) = await routing.submit(command) {
            logger.error("corruption check: could not raise the CORRUPT alarm: \(status.message)")
        }
        return finding
    }

    /// The initial check: this member's hash against every other member's
    /// at its revision, once it has replayed what it had committed before
    /// this start (`replayedThrough`). Returns the differences found.
    func initialCheck(replayedThrough index: UInt64) async -> [CorruptionCheck.Finding] {
        while node.status.appliedIndex < index && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let me = node.status.id
        guard let own = await ownReport(me), let cluster = await clusterID() else { return [] }
        let peers = await reports(at: own.revision, excluding: me, cluster: cluster)
        for peer in peers where peer.compactRevision != own.compactRevision {
            logger.warning(
                "initial corruption check: cannot compare with member \(hex(peer.member)): it compacted at \(peer.compactRevision), this member at \(own.compactRevision)")
        }
        let findings = CorruptionCheck.initialVerdict(own: own, peers: peers)
        if peers.isEmpty {
            logger.warning("initial corruption check: no other member answered; nothing compared", metadata: ["revision": "\(own.revision)"])
        } else if findings.isEmpty {
            logger.info("initial corruption check: this member's data agrees with its peers'",
                        metadata: ["revision": "\(own.revision)", "compared": "\(peers.count)"])
        }
        return findings
    }

    private func ownReport(_ me: NodeID, confirmed: Bool = false) async -> CorruptionCheck.Report? {
        switch await MaintenanceService.hashKV(node: node, revision: 0, confirmed: confirmed) {
        case let .success((hash, revision, compacted)):
            return CorruptionCheck.Report(member: me, hash: hash, revision: revision, compactRevision: compacted)
        case let .failure(status):
            logger.warning("corruption check: cannot hash this member's data: \(status.message)")
            return nil
        }
    }

    /// A member's HashKV at `revision`; nil (logged) when it cannot be had —
    /// unreachable, behind that revision, or compacted past it.
    /// Every other member's report at `revision`, asked at once, in id
    /// order; those that cannot be had are left out.
    private func reports(at revision: Int64, excluding me: NodeID, cluster: UInt64) async -> [CorruptionCheck.Report] {
        let others = Set(node.status.voters + node.status.learners).subtracting([me])
        return await withTaskGroup(of: CorruptionCheck.Report?.self) { group in
            for peer in others {
                group.addTask { await report(of: peer, at: revision, cluster: cluster) }
            }
            var reports: [CorruptionCheck.Report] = []
            for await report in group { if let report { reports.append(report) } }
            return reports.sorted { $0.member < $1.member }
        }
    }

    /// The cluster's id, from the member directory this member applied.
    private func clusterID() async -> UInt64? {
        await node.withMachine { $0.machine.members.clusterID }
    }

    private func report(of peer: NodeID, at revision: Int64, cluster: UInt64) async -> CorruptionCheck.Report? {
        var request = Etcdserverpb_HashKVRequest()
        request.revision = revision
        guard let bytes = try? request.serializedBytes() as [UInt8] else { return nil }
        let answer = await forwarder.forward("/etcdserverpb.Maintenance/HashKV", bytes, to: peer)
        switch answer {
        case let .success(reply)?:
            guard let response = try? Etcdserverpb_HashKVResponse(serializedBytes: reply) else {
                logger.warning("corruption check: member \(hex(peer)) sent a malformed HashKV answer")
                return nil
            }
            // Credited to whoever answered: an address now serving another
            // member (or cluster) must not get this member convicted.
            guard response.header.memberID == peer, response.header.clusterID == cluster else {
                logger.warning("corruption check: member \(hex(peer))'s address is answered by member \(hex(response.header.memberID))")
                return nil
            }
            return CorruptionCheck.Report(
                member: peer, hash: response.hash, revision: response.header.revision,
                compactRevision: response.compactRevision)
        case let .failure(status)?:
            logger.warning("corruption check: cannot check member \(hex(peer)) at revision \(revision): \(status.message)")
            return nil
        case nil:
            logger.warning("corruption check: member \(hex(peer))'s address is unknown")
            return nil
        }
    }
}
