@testable import EnsembleServer
import Foundation
import Raft
import RaftTransport
import Testing

/// Proposals made while a member knows no leader wait for one (up to two
/// election timeouts) instead of failing at once.
@Suite(.serialized, .timeLimit(.minutes(1))) struct NoLeaderTests {
    @Test func aProposalMadeBeforeTheFirstElectionWaitsAndCommits() async throws {
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        // Elections take 250–500 ms with 25 ms ticks: nobody leads yet.
        let node = try #require(cluster.nodes[1])
        #expect(node.status.leader == .none)
        #expect(try await node.propose(RegisterMachine.put("early", "1")) == "ok")
        let leader = try await cluster.waitForLeader()
        #expect(try await cluster.read("early", on: leader) == "1")
    }

    @Test func aLinearizableReadMadeBeforeTheFirstElectionWaitsAndIsServed() async throws {
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        let node = try #require(cluster.nodes[2])
        #expect(node.status.leader == .none)
        #expect(try await node.read("nothing") == nil)
    }

    /// Lease renewals and time-to-live queries run on the leader's machine
    /// outside the log: they wait for a leader too.
    @Test func aLeaseQueryBeforeTheFirstElectionWaitsForTheLeader() async throws {
        let directory = NSTemporaryDirectory() + "ensemble-noleader-lease-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var options = NodeLoop<KVReplica>.Options()
        options.tickInterval = .milliseconds(25)
        let node = try NodeLoop(
            config: RaftConfig(id: 1), directory: directory, bootstrap: [1], machine: KVReplica(),
            transport: InMemoryTransport(), options: options)
        node.start()
        defer { node.stop() }
        #expect(node.status.leader == .none)
        // A lone member elects itself after an election timeout (250–500 ms).
        let remaining = try await LeaderRouting(node: node).onLeader { $0.timeToLive(7)?.remaining }
        #expect(remaining == -1)
    }

    @Test func aMemberCutOffFromTheOthersRefusesAfterTwoElectionTimeouts() async throws {
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        cluster.transport.isolate(1, from: cluster.ids)
        let node = try #require(cluster.nodes[1])
        let started = ContinuousClock.now
        await #expect(throws: NodeError.noLeader) { try await node.propose(RegisterMachine.put("lost", "1")) }
        let waited = ContinuousClock.now - started
        // Two election timeouts of 10 ticks of 25 ms, checked once per tick;
        // well short of the 7 s request timeout.
        #expect(waited >= .milliseconds(450) && waited < .seconds(5), "\(waited)")
        cluster.transport.heal()
    }
}
