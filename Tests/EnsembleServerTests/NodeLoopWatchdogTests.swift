import EnsembleServer
import Foundation
import Raft
import RaftTransport
import Synchronization
import Testing

/// A transport whose `send` blocks while `held` is set: the node loop calls
/// it inside a cycle, so the cycle is stuck there, as on a stalled disk.
final class BlockingTransport: PeerTransport {
    let held = Atomic<Bool>(false)
    func send(_ messages: [Message]) -> Set<NodeID> {
        while held.load(ordering: .relaxed) { usleep(1_000) }
        return []
    }
    func register(_ member: NodeID, deliver: @escaping @Sendable ([Message]) -> Void) {}
    func unregister(_ member: NodeID) {}
}

/// Review findings on the node runtime: requests waiting behind a stuck loop
/// must not wait forever, and a loop stopped before it started must answer
/// what was asked of it.
@Suite(.serialized, .timeLimit(.minutes(1))) struct NodeLoopWatchdogTests {
    @Test func requestsBehindAStuckCycleTimeOut() async throws {
        let directory = NSTemporaryDirectory() + "ensemble-watchdog-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let transport = BlockingTransport()
        var options = NodeLoop<RegisterMachine>.Options()
        options.tickInterval = .milliseconds(20)
        options.requestTimeout = .milliseconds(500)
        let node = try NodeLoop(
            config: RaftConfig(id: 1), directory: directory, bootstrap: [1], machine: RegisterMachine(),
            transport: transport, options: options)
        node.start()
        defer {
            transport.held.store(false, ordering: .relaxed)
            node.stop()
        }
        node.campaign()
        while node.status.role != .leader { try await Task.sleep(for: .milliseconds(10)) }
        #expect(try await node.propose(RegisterMachine.put("a", "1")) == "ok")
        transport.held.store(true, ordering: .relaxed)
        // The first write takes the loop into a cycle that blocks in send.
        node.propose(RegisterMachine.put("b", "1")) { _ in }
        try await Task.sleep(for: .milliseconds(100))
        let started = ContinuousClock.now
        let second: Result<String, NodeError> = await withCheckedContinuation { continuation in
            node.propose(RegisterMachine.put("c", "1")) { continuation.resume(returning: $0) }
        }
        #expect(second == .failure(.outcomeUnknown), "\(second)")
        #expect(ContinuousClock.now - started < .seconds(3))
        let stillHeld = transport.held.load(ordering: .relaxed)
        #expect(stillHeld, "answered while the loop was still stuck")
    }

    @Test func aLoopStoppedBeforeItStartedAnswersWhatWasAsked() async throws {
        let directory = NSTemporaryDirectory() + "ensemble-unstarted-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try NodeLoop(
            config: RaftConfig(id: 1), directory: directory, bootstrap: [1], machine: RegisterMachine(),
            transport: InMemoryTransport(), options: .init())
        async let proposed: Result<String, NodeError> = withCheckedContinuation { continuation in
            node.propose(RegisterMachine.put("a", "1")) { continuation.resume(returning: $0) }
        }
        async let performed = node.withMachine { _ in true }
        try await Task.sleep(for: .milliseconds(50))
        node.stop()
        #expect(await proposed == .failure(.stopped))
        #expect(await performed == nil)
        node.start()
        #expect(!node.status.running, "a stopped loop does not start")
        // Its data directory is free again.
        let again = try NodeLoop(
            config: RaftConfig(id: 1), directory: directory, bootstrap: [1], machine: RegisterMachine(),
            transport: InMemoryTransport(), options: .init())
        again.stop()
    }
}
