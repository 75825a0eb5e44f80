import EnsembleAPI
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
            try? await Task.sleep(for: interval)
            guard node.status.role == .leader else { continue }
            await checkOnce()
        }
    }

    /// One check, as etcd's `checkHashKV`; returns what it found.
    @discardableResult
    func checkOnce() async -> CorruptionCheck.Finding? {
        let me = node.status.id
        guard let before = await ownReport(me) else { return nil }
        let others = Set(node.status.voters + node.status.learners).subtracting([me]).sorted()
        let peers = await withTaskGroup(of: CorruptionCheck.Report?.self) { group in
            for peer in others {
                group.addTask { await report(of: peer, at: before.revision) }
            }
            var reports: [CorruptionCheck.Report] = []
            for await report in group { if let report { reports.append(report) } }
            return reports.sorted { $0.member < $1.member }
        }
        guard let after = await ownReport(me) else { return nil }
        guard let finding = CorruptionCheck.verdict(leader: before, after: after, peers: peers) else {
            logger.debug("corruption check: members agree", metadata: ["revision": "\(before.revision)", "peers": "\(peers.count)"])
            return nil
        }
        logger.error(
            "corruption check: member \(hex(finding.member)) has inconsistent data: \(finding.reason); raising the CORRUPT alarm")
        var command = Ensemble_V1_Command()
        command.alarm.action = .activate
        command.alarm.memberID = finding.member
        command.alarm.alarm = .corrupt
        if case let .failure(status) = await routing.submit(command) {
            logger.error("corruption check: could not raise the CORRUPT alarm: \(status.message)")
        }
        return finding
    }

    private func ownReport(_ me: NodeID) async -> CorruptionCheck.Report? {
        switch await MaintenanceService.hashKV(node: node, revision: 0) {
        case let .success((hash, revision, compacted)):
            return CorruptionCheck.Report(member: me, hash: hash, revision: revision, compactRevision: compacted)
        case let .failure(status):
            logger.warning("corruption check: cannot hash this member's data: \(status.message)")
            return nil
        }
    }

    /// A member's HashKV at `revision`; nil (logged) when it cannot be had —
    /// unreachable, behind that revision, or compacted past it.
    private func report(of peer: NodeID, at revision: Int64) async -> CorruptionCheck.Report? {
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
