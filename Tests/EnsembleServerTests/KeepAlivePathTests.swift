import EnsembleAPI
import Foundation
import KV
import Raft
import RaftTransport
import SwiftProtobuf
import Synchronization
import Testing

@testable import EnsembleServer

/// A leader renews keep-alives without a Swift task: the round is posted to
/// its node and answered from the apply thread, so renewals do not wait for
/// the cooperative pool (which a busy process may hold).
@Suite(.timeLimit(.minutes(1))) struct KeepAlivePathTests {
    @Test func aLeaderRenewsInOneRoundWithoutATask() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await Self.leader(in: directory)
        defer { node.stop() }
        _ = try await node.propose(try command {
            $0.leaseGrant.id = 42
            $0.leaseGrant.ttl = 30
        })
        let service = LeaseService(node: node, clusterID: 7)
        // A repeated id is renewed once and answered twice; an unknown lease gets TTL 0.
        let ids: [LeaseID] = [42, 99, 42]
        let round = await withCheckedContinuation { continuation in
            service.keepAlive(ids) { continuation.resume(returning: $0) }
        }
        guard case let .renewed(distinct, renewed, _) = round else {
            Issue.record("not renewed in one round: \(round)")
            return
        }
        #expect(distinct == [42, 99])
        #expect(renewed.ttls == [30, 0])
        let (answers, failure) = service.answers(ids, round)
        #expect(failure == nil)
        let responses = try answers.map { try Etcdserverpb_LeaseKeepAliveResponse(serializedBytes: $0) }
        #expect(responses.map(\.id) == ids)
        #expect(responses.map(\.ttl) == [30, 0, 30])
        #expect(responses.allSatisfy { $0.header.clusterID == 7 && $0.header.memberID == 1 })
    }

    /// A lease whose log holds a checkpoint (a remaining TTL a new leader
    /// would start from) is answered only once a clearing checkpoint has
    /// applied: proposed at the next tick instead, a leadership transfer or
    /// a crash lost it, and the next leader expired the renewed lease early.
    @Test func aRenewalClearsTheLeasesCheckpointBeforeItIsAnswered() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await Self.leader(in: directory)
        defer { node.stop() }
        let service = LeaseService(node: node, clusterID: 7)
        _ = try await node.propose(try command {
            $0.leaseGrant.id = 42
            $0.leaseGrant.ttl = 30
        })
        _ = try await node.propose(try command {
            var checkpoint = Ensemble_V1_LeaseCheckpoint()
            checkpoint.id = 42
            checkpoint.remainingTtl = 29  // what the lease has left: no tick clears it
            $0.leaseCheckpoints.checkpoints = [checkpoint]
        })
        #expect(await node.withMachine { $0.machine.leases.leases[42]?.checkpointTTL } == 29)
        let round = await withCheckedContinuation { continuation in
            service.keepAlive([42]) { continuation.resume(returning: $0) }
        }
        let (answers, failure) = service.answers([42], round)
        #expect(failure == nil)
        #expect(try answers.map { try Etcdserverpb_LeaseKeepAliveResponse(serializedBytes: $0).ttl } == [30])
        #expect(await node.withMachine { $0.machine.leases.leases[42]?.checkpointTTL } == 0, "cleared before the answer")
        // Renewed again with nothing to clear: one round, no task.
        let again = await withCheckedContinuation { continuation in
            service.keepAlive([42]) { continuation.resume(returning: $0) }
        }
        guard case .renewed = again else {
            Issue.record("not renewed in one round: \(again)")
            return
        }
    }

    /// A round where some leases expired (their revocation not applied yet)
    /// answers the renewed ones now and none for the expired: those go round
    /// again on their stream, to wait for the revocation there.
    @Test func aPartlyRenewedRoundAnswersOnlyTheRenewed() throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try Self.node(in: directory)
        let service = LeaseService(node: node, clusterID: 7)
        let round = LeaseService.KeepAliveRound.renewed(distinct: [42, 44], (ttls: [30, 60], revision: 9, clears: []), pending: [43])
        let (answers, failure) = service.answers([42, 43, 44, 42], round)
        #expect(failure == nil)
        let responses = try answers.map { try Etcdserverpb_LeaseKeepAliveResponse(serializedBytes: $0) }
        #expect(responses.map(\.id) == [42, 44, 42])
        #expect(responses.map(\.ttl) == [30, 60, 30])
        #expect(responses.allSatisfy { $0.header.revision == 9 })
    }

    /// A member that stopped answers the round with a failure, not silence.
    @Test func aStoppedMemberFailsTheRound() async throws {
        let directory = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try await Self.leader(in: directory)
        node.stop()
        let service = LeaseService(node: node, clusterID: 7)
        let round = await withCheckedContinuation { continuation in
            service.keepAlive([42]) { continuation.resume(returning: $0) }
        }
        let (answers, failure) = service.answers([42], round)
        #expect(answers.isEmpty)
        #expect(failure != nil)
    }

    static func directory() -> String { NSTemporaryDirectory() + "ensemble-keepalive-\(UUID().uuidString)" }

    /// A one-member node over `directory`, not started.
    static func node(in directory: String) throws -> NodeLoop<KVReplica> {
        try NodeLoop(config: RaftConfig(id: 1), directory: directory, bootstrap: [1], machine: KVReplica(), transport: InMemoryTransport())
    }

    /// ``node(in:)`` started and leading.
    static func leader(in directory: String) async throws -> NodeLoop<KVReplica> {
        let node = try node(in: directory)
        node.start()
        for _ in 0..<500 where node.status.role != .leader {
            node.campaign()
            try await Task.sleep(for: .milliseconds(10))
        }
        return node
    }
}
