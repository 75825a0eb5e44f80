@testable import EnsembleServer
import Foundation
import KV
import Raft
import Synchronization
import Testing

/// Membership changes are checked against the state every earlier change
/// applied to (``NodeLoop/proposeConfChange(checked:)``).
@Suite(.serialized, .timeLimit(.minutes(2))) struct ConfChangeCheckTests {
    /// Two adds of one peer URL: the second was checked before the first
    /// applied; it is checked again, and refused, instead of being proposed
    /// (a second member record with the same URL — a voter no process runs).
    @Test func aChangeCheckedBeforeAnEarlierOneAppliedIsCheckedAgain() async throws {
        let f = try await DevClusterFixture()
        let leader = try #require(f.cluster.nodeDirectory.nodes.withLock { $0[f.leader] })
        let urls = ["http://127.0.0.1:1"]
        func add(_ id: UInt64, slow: Bool, checks: Counter?) -> NodeLoop<KVReplica>.ConfChangeCheck {
            { replica, _ in
                checks?.count.add(1, ordering: .relaxed)
                // Holds the applier: the first change commits meanwhile.
                if slow { Thread.sleep(forTimeInterval: 1) }
                do throws(MemberError) {
                    // Contact with the peers is not what this test is about.
                    let members = replica.machine.members
                    try members.checkAdd(peerURLs: urls, isLearner: false, local: 0, healthy: Set(members.members.keys))
                } catch {
                    return .refuse(.failure(.member(error)))
                }
                let record = Member(id: id, peerURLs: urls)
                return .propose(ConfChange(.addVoter, node: id, context: KVReplica.memberContext(record)))
            }
        }
        let secondChecks = Counter()
        let second = Mutex<Task<KVReplica.Result, any Error>?>(nil)
        let first = add(1001, slow: false, checks: nil)
        let secondCheck = add(1002, slow: true, checks: secondChecks)
        // The second is asked once the first has been checked (and is being
        // proposed): its check sees the state before the first applies.
        let firstResult = try await leader.proposeConfChange(checked: { replica, status in
            let decision = first(replica, status)
            second.withLock { $0 = Task { try await leader.proposeConfChange(checked: secondCheck) } }
            return decision
        })
        guard case .success(.members(let members)) = firstResult else { Issue.record("\(firstResult)"); return }
        #expect(members.contains { $0.id == 1001 })
        let secondResult = try await #require(second.withLock { $0 }).value
        guard case .failure(.member(.peerURLExists)) = secondResult else {
            Issue.record("the second add: \(secondResult)")
            return
        }
        #expect(secondChecks.count.load(ordering: .relaxed) == 2, "checked again after the first applied")
        let directory = try #require(await leader.withMachine { $0.machine.members })
        #expect(directory.members.values.filter { $0.peerURLs == urls }.count == 1)
        await f.close()
    }
}

final class Counter: Sendable {
    let count = Atomic<Int>(0)
}
