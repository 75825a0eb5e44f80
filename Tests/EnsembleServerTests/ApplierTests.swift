@testable import EnsembleServer
import Foundation
import Raft
import Synchronization
import Testing

/// The apply thread on its own: when the machine hears that its member leads.
@Suite struct ApplierTests {
    func started(_ machine: RegisterMachine, failed: @escaping @Sendable (any Error) -> Void = { _ in }) -> Applier<RegisterMachine> {
        let hooks = Applier<RegisterMachine>.Hooks(
            propose: { _ in }, snapshotWritten: { _, _, _ in }, failed: failed, applied: { _ in })
        let applier = Applier(
            machine: machine, snapshot: SnapshotMetadata(term: 1, confState: ConfState(voters: [1, 2, 3])), snapshotBytes: 0,
            snapshotEvery: 1_000_000, snapshotLogRatio: 1, storageDirectory: NSTemporaryDirectory(), observer: nil,
            label: "test", hooks: hooks)
        applier.start(name: "applier-test")
        return applier
    }

    func promoted(_ applier: Applier<RegisterMachine>, _ machine: RegisterMachine) -> [String: String]? {
        let seen = Mutex<[String: String]??>(nil)
        let done = DispatchSemaphore(value: 0)
        applier.post(.perform({ machine in
            seen.withLock { $0 = .some(machine.valuesAtPromotion) }
            done.signal()
        }, refused: { done.signal() }))
        done.wait()
        return seen.withLock { $0 } ?? nil
    }

    /// A new leader may hold entries the old leader committed that it has not
    /// yet learned are committed: its machine (the lessor) must not act as
    /// leader until they are applied, i.e. until its own term's first entry.
    @Test func aNewLeaderIsPromotedWhenTheFirstEntryOfItsTermApplies() {
        let machine = RegisterMachine()
        let applier = started(machine)
        defer { applier.stop() }
        applier.post(.entries([Entry(term: 1, index: 1, data: RegisterMachine.put("a", "1"))], conf: ConfState(voters: [1, 2, 3]), waiters: []))
        applier.post(.roleChanged(isLeader: true, term: 2))
        #expect(promoted(applier, machine) == nil, "not before the old term's entries are applied")
        applier.post(.entries(
            [Entry(term: 1, index: 2, data: RegisterMachine.put("b", "2")), Entry(term: 2, index: 3)],
            conf: ConfState(voters: [1, 2, 3]), waiters: []))
        #expect(promoted(applier, machine) == ["a": "1", "b": "2"])

        applier.post(.roleChanged(isLeader: false, term: 2))
        #expect(promoted(applier, machine) == nil, "a step-down is heard at once")
        // Leading again in a term whose entries are already applied: at once.
        applier.post(.roleChanged(isLeader: true, term: 2))
        #expect(promoted(applier, machine) == ["a": "1", "b": "2"])
    }

    @Test func aLeadershipLostBeforeItsTermAppliesIsNeverHeard() {
        let machine = RegisterMachine()
        let applier = started(machine)
        defer { applier.stop() }
        applier.post(.roleChanged(isLeader: true, term: 3))
        applier.post(.roleChanged(isLeader: false, term: 3))
        applier.post(.entries([Entry(term: 4, index: 1)], conf: ConfState(voters: [1, 2, 3]), waiters: []))
        #expect(promoted(applier, machine) == nil)
    }

    /// A tick that comes overdue while a long apply runs judges before the
    /// work queued behind it, except what it must see (keep-alives that
    /// arrived meanwhile hold their leases' expiry): that runs first.
    @Test func anOverdueTickRunsAfterWhatItMustSee() {
        let machine = RegisterMachine()
        let applier = started(machine)
        defer { applier.stop() }
        let voters = ConfState(voters: [1, 2, 3])
        applier.post(.entries([Entry(term: 1, index: 1, data: RegisterMachine.sleep(300))], conf: voters, waiters: []))
        Thread.sleep(forTimeInterval: 0.1)
        // The next batch: a tick comes due, then another long apply.
        applier.post(.leaderTick)
        applier.post(.entries([Entry(term: 1, index: 2, data: RegisterMachine.sleep(900))], conf: voters, waiters: []))
        Thread.sleep(forTimeInterval: 0.5)
        // Queued behind it, once the tick is overdue: plain work, and work the tick must see.
        applier.post(.perform({ machine in machine.trace.append("plain") }, refused: nil))
        applier.post(.beforeTick({ machine in machine.trace.append("arrived") }, refused: nil))
        let done = DispatchSemaphore(value: 0)
        applier.post(.perform({ _ in done.signal() }, refused: { done.signal() }))
        done.wait()
        let trace = Mutex<[String]>([])
        let read = DispatchSemaphore(value: 0)
        applier.post(.perform({ machine in trace.withLock { $0 = machine.trace }; read.signal() }, refused: { read.signal() }))
        read.wait()
        let seen = trace.withLock { $0 }
        #expect(seen == ["arrived", "tick", "plain"], "the overdue tick goes before plain work, after what it must see: \(seen)")
    }

    /// A committed membership change of a kind this binary cannot read stops
    /// the member instead of being skipped (it would count another quorum).
    @Test func anUnreadableMembershipChangeStopsTheMember() {
        let machine = RegisterMachine()
        let failure = Mutex<String?>(nil)
        let applier = started(machine) { error in failure.withLock { $0 = "\(error)" } }
        defer { applier.stop() }
        // The writes after it are committed (other members apply them): a
        // waiter whose entry is there did happen, as far as anyone here can
        // tell; one whose index another leader's entry took did not.
        let answers = Mutex<[UInt64: NodeError]>([:])
        func waiter(_ index: UInt64, term: UInt64) -> Applier<RegisterMachine>.Waiter {
            .init(index: index, term: term) { result in
                if case let .failure(error) = result { answers.withLock { $0[index] = error } }
            }
        }
        applier.post(.entries(
            [Entry(term: 1, index: 1, kind: .confChange, data: [200] + [UInt8](repeating: 0, count: 8)),
             Entry(term: 1, index: 2, data: RegisterMachine.put("after", "1")),
             Entry(term: 2, index: 3, data: RegisterMachine.put("other", "1"))],
            conf: ConfState(voters: [1, 2, 3]), waiters: [waiter(2, term: 1), waiter(3, term: 1)]))
        let done = DispatchSemaphore(value: 0)
        applier.post(.perform({ _ in done.signal() }, refused: { done.signal() }))
        done.wait()
        #expect(failure.withLock { $0 }?.contains("index 1") == true)
        #expect(machine.read("after") == nil, "nothing after it applies")
        #expect(answers.withLock { $0 } == [2: .outcomeUnknown, 3: .leaderChanged])
    }
}
