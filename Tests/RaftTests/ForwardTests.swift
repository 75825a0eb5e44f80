import Raft
import RaftSimulation
import Testing

/// Proposals a follower forwards to its leader (thesis §6.2), answered with
/// the index and term they got.
@Suite struct ForwardTests {
    @Test func aFollowerBatchIsAppendedByTheLeaderAndAnswered() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.on(3) { node in try? node.forward([bytes("a"), bytes("b")], context: bytes("batch-1")) }
        cluster.stabilize()
        let answer = try #require(cluster.forwarded[3]?.last)
        #expect(answer.context == bytes("batch-1"))
        let first = try #require(answer.index)
        #expect(answer.term == cluster.node(1).term)
        for id in cluster.ids {
            let entries = cluster.applied[id, default: []]
            #expect(entries.first { $0.index == first }?.data == bytes("a"), "member \(id)")
            #expect(entries.first { $0.index == first + 1 }?.data == bytes("b"), "member \(id)")
        }
    }

    /// The network may deliver a message twice: the batch is appended once.
    @Test func aDuplicatedBatchIsAppendedOnce() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.on(2) { node in try? node.forward([bytes("once")], context: bytes("dup")) }
        let sent = cluster.take { $0.kind == .propose }
        #expect(sent.count == 1)
        for message in sent + sent { cluster.deliver(message) }
        cluster.stabilize()
        let copies = cluster.applied[1, default: []].filter { $0.data == bytes("once") }
        #expect(copies.count == 1)
        #expect(cluster.forwarded[2]?.count == 1)
    }

    /// A member that does not lead refuses a batch sent to it, so the sender
    /// does not wait in vain; a member with no leader cannot forward at all.
    @Test func aNonLeaderRefusesAndNoLeaderThrows() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.deliver(Message(kind: .propose, from: 2, to: 3, term: cluster.node(3).term, entries: [Entry(term: 0, index: 0, data: bytes("x"))], context: bytes("stale")))
        cluster.stabilize()
        let answer = try #require(cluster.forwarded[2]?.last)
        #expect(answer.index == nil && answer.context == bytes("stale"))
        #expect(!cluster.applied[1, default: []].contains { $0.data == bytes("x") })
        let fresh = try Cluster(voters: 3)
        #expect(throws: ProposalError.self) { try fresh.on(2) { node in try node.forward([bytes("y")], context: []) } }
    }

    /// A leader handing leadership over refuses a forwarded batch and says
    /// why (hint 2): the follower offers it to the successor rather than
    /// failing it. Other refusals carry no such mark.
    @Test func aRefusalDuringAHandOverSaysSo() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        // Node 3 cut off: the transfer to it waits for its log to catch up.
        cluster.dropIf = { $0.to == 3 }
        _ = try cluster.on(1) { node in try node.transferLeadership(to: 3) }
        cluster.on(2) { node in try? node.forward([bytes("during")], context: bytes("handover")) }
        cluster.stabilize()
        let answer = try #require(cluster.forwarded[2]?.last)
        #expect(answer.index == nil && answer.handingOver && !answer.outcomeUnknown)
        #expect(!cluster.applied[1, default: []].contains { $0.data == bytes("during") })
        cluster.dropIf = nil
        cluster.deliver(Message(kind: .propose, from: 2, to: 3, term: cluster.node(3).term, entries: [Entry(term: 0, index: 0, data: bytes("x"))], context: bytes("stale")))
        cluster.stabilize()
        let refused = try #require(cluster.forwarded[2]?.last { $0.context == bytes("stale") })
        #expect(refused.index == nil && !refused.handingOver)
    }

    /// A leader that took a batch and then stepped down in the same term must
    /// not refuse a duplicate of it as certainly not done: the batch is in its
    /// log and may commit (found in review). Its refusal says "unknown".
    @Test func aRefusalFromAMemberThatMayHaveLedIsNotCertain() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        let term = cluster.node(1).term
        cluster.on(2) { node in try? node.forward([bytes("b")], context: bytes("ctx")) }
        cluster.stabilize()
        #expect(cluster.forwarded[2]?.last?.index != nil)
        let copy = try #require(cluster.sent.last { $0.kind == .propose && $0.from == 2 })
        // Node 1 loses its quorum and steps down (check-quorum), same term.
        cluster.dropIf = { $0.from == 1 || $0.to == 1 }
        cluster.tick(1, times: 2 * RaftConfig(id: 1).electionTick + 2)
        cluster.dropIf = nil
        #expect(cluster.node(1).role == .follower && cluster.node(1).term == term)
        cluster.deliver(copy)
        cluster.stabilize()
        let answer = try #require(cluster.forwarded[2]?.last)
        #expect(answer.index == nil && answer.outcomeUnknown)
    }

    /// A duplicate of a batch the leader took, arriving after its sender was
    /// removed: not "certainly not done" (the batch may commit), but unknown.
    /// A batch it never took is refused for certain.
    @Test func aRemovedSendersDuplicateIsNotRefusedAsCertain() throws {
        let cluster = try Cluster(voters: 3)
        cluster.elect(1)
        cluster.on(3) { node in try? node.forward([bytes("b")], context: bytes("taken")) }
        cluster.stabilize()
        #expect(cluster.forwarded[3]?.last?.index != nil)
        let copy = try #require(cluster.sent.last { $0.kind == .propose && $0.from == 3 })
        cluster.on(1) { node in _ = try? node.proposeConfChange(ConfChange(.remove, node: 3)) }
        cluster.stabilize()
        #expect(!cluster.node(1).confState.voters.contains(3))
        cluster.deliver(copy)
        cluster.stabilize()
        let answer = try #require(cluster.forwarded[3]?.last)
        #expect(answer.index == nil && answer.outcomeUnknown)
        var fresh = copy
        fresh.context = bytes("never")
        cluster.deliver(fresh)
        cluster.stabilize()
        let refusal = try #require(cluster.forwarded[3]?.last)
        #expect(refusal.context == bytes("never") && refusal.index == nil && !refusal.outcomeUnknown)
    }
}
