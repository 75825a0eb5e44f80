@testable import KV
import Raft
import Testing

/// Bounded history replay (what a watcher's catch-up reads) against the
/// unbounded one: a prefix of whole revisions, at least the limit when there
/// is that much, and `through` where it stopped.
@Suite struct BoundedHistoryTests {
    @Test(arguments: 1...6)
    func boundedReplayIsAPrefixOfWholeRevisions(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let store = MVCCStore()
        let keys = (0..<8).map { b("k\($0)") }
        for step in 0..<400 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0:
                _ = try store.deleteRange(DeleteRangeRequest(key: b("k"), rangeEnd: b("k\(Int.random(in: 0...8, using: &rng))")))
            case 1:
                // Several changes in one revision.
                let a = keys[Int.random(in: 0..<4, using: &rng)], c = keys[Int.random(in: 4..<8, using: &rng)]
                _ = try store.txn(TxnRequest(success: [.put(PutRequest(key: a, value: b("t\(step)"))), .put(PutRequest(key: c, value: b("u")))]))
            default:
                let value = [UInt8](repeating: UInt8(step % 256), count: Int.random(in: 0...64, using: &rng))
                _ = try store.put(PutRequest(key: keys[Int.random(in: 0..<8, using: &rng)], value: value))
            }
        }
        let ranges = [
            KeyRange(key: b("k"), rangeEnd: [0]), KeyRange(key: b("k2"), rangeEnd: b("k6")), KeyRange(key: b("k3"), rangeEnd: []),
        ]
        for _ in 0..<200 {
            let range = ranges[Int.random(in: 0..<ranges.count, using: &rng)]
            let first = Int64.random(in: 1...store.revision, using: &rng)
            let last = Int64.random(in: first...store.revision, using: &rng)
            let limit = Int.random(in: 1...50, using: &rng)
            let maxBytes = Bool.random(using: &rng) ? Int.max : Int.random(in: 1...2_000, using: &rng)
            let all = store.events(in: range, from: first, through: last)
            let (bounded, through) = store.events(in: range, from: first, through: last, limit: limit, maxBytes: maxBytes)
            let context = "seed \(seed) \(first)...\(last) limit \(limit) bytes \(maxBytes)"
            #expect(bounded == Array(all.prefix(bounded.count)), "\(context)")
            #expect(through >= first && through <= last, "\(context)")
            // Everything up to `through`, nothing after.
            #expect(bounded.count == all.filter { $0.kv.modRevision <= through }.count, "\(context)")
            if through < last {
                #expect(bounded.last?.kv.modRevision == through, "\(context): stopped at a revision it covered")
                #expect(bounded.count >= limit || maxBytes < .max, "\(context): stopped early")
            } else {
                #expect(bounded.count == all.count, "\(context)")
            }
        }
    }
}

/// The two ways of finding a replay's changes — merging the histories of the
/// keys in range, and reading the store's change log by revision — give the
/// same events and stop at the same revision, through compactions and a
/// snapshot restore (which rebuilds the change log).
@Suite struct ReplayPlanTests {
    @Test(arguments: 1...4)
    func bothPlansAgree(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let machine = KVStateMachine()
        let keys = (0..<12).map { b("k\($0)") } + [b("j"), b("l0")]
        for step in 0..<600 {
            let store = machine.store
            switch Int.random(in: 0..<20, using: &rng) {
            case 0, 1:
                _ = try store.deleteRange(DeleteRangeRequest(key: b("k"), rangeEnd: b("k\(Int.random(in: 0...9, using: &rng))")))
            case 2, 3:
                let a = keys[Int.random(in: 0..<6, using: &rng)], c = keys[Int.random(in: 6..<14, using: &rng)]
                _ = try store.txn(TxnRequest(success: [.put(PutRequest(key: a, value: b("t\(step)"))), .put(PutRequest(key: c, value: b("u")))]))
            case 6:
                // A key put and then deleted in one revision (if the txn
                // checks allow it): two changes to it at one main revision.
                let key = keys[Int.random(in: 0..<keys.count, using: &rng)]
                _ = try? store.txn(TxnRequest(success: [
                    .put(PutRequest(key: key, value: b("p"))), .deleteRange(DeleteRangeRequest(key: key, rangeEnd: [0])),
                ]))
            case 4 where store.revision > store.compactedRevision + 20:
                try store.compact(Int64.random(in: (store.compactedRevision + 1)...(store.revision - 10), using: &rng))
            case 5:
                // A restored member replays from its rebuilt change log.
                let restored = KVStateMachine()
                try restored.restore(machine.snapshot())
                try check(machine.store, against: restored.store, &rng, "seed \(seed) step \(step) restored")
            default:
                let value = [UInt8](repeating: UInt8(step % 256), count: Int.random(in: 0...32, using: &rng))
                _ = try store.put(PutRequest(key: keys[Int.random(in: 0..<keys.count, using: &rng)], value: value))
            }
            if step % 50 == 49 { try check(machine.store, against: machine.store, &rng, "seed \(seed) step \(step)") }
        }
    }

    /// Replays on `a` by key and on `other` by revision (and automatically) agree.
    private func check(_ a: MVCCStore, against other: MVCCStore, _ rng: inout SeededRandom, _ context: String) throws {
        #expect(other.changes.entries.allSatisfy { $0.revision.main >= other.compactedRevision })
        let ranges = [
            KeyRange(key: b("k"), rangeEnd: [0]), KeyRange(key: b("k2"), rangeEnd: b("k6")), KeyRange(key: b("k3"), rangeEnd: []),
            KeyRange(key: [0], rangeEnd: [0]), KeyRange(key: b("k1"), rangeEnd: b("k2")), KeyRange(key: b("z"), rangeEnd: [0]),
        ]
        for _ in 0..<60 {
            let range = ranges[Int.random(in: 0..<ranges.count, using: &rng)]
            let first = Int64.random(in: max(a.compactedRevision, 1)...a.revision, using: &rng)
            let last = Int64.random(in: first...a.revision, using: &rng)
            let limit = Bool.random(using: &rng) ? Int.max : Int.random(in: 1...30, using: &rng)
            let maxBytes = Bool.random(using: &rng) ? Int.max : Int.random(in: 1...1_500, using: &rng)
            let byKey = a.events(in: range, from: first, through: last, limit: limit, maxBytes: maxBytes, plan: .byKey)
            let byRevision = other.events(in: range, from: first, through: last, limit: limit, maxBytes: maxBytes, plan: .byRevision)
            let automatic = other.events(in: range, from: first, through: last, limit: limit, maxBytes: maxBytes)
            // A small first allowance: many rounds of reading on, then merging.
            let stepwise = other.events(
                in: range, from: first, through: last, limit: limit, maxBytes: maxBytes, plan: .automaticStarting(Int.random(in: 1...4, using: &rng)))
            let where_ = "\(context): \(range) \(first)...\(last) limit \(limit) bytes \(maxBytes)"
            #expect(byKey.events == byRevision.events, "\(where_)")
            #expect(byKey.through == byRevision.through, "\(where_)")
            #expect(byKey.events == automatic.events && byKey.through == automatic.through, "\(where_): automatic")
            #expect(byKey.events == stepwise.events && byKey.through == stepwise.through, "\(where_): stepwise")
            // Without previous states (a watcher without prev_kv): the same
            // changes, bare; under a byte bound they count less, so more may fit.
            let bare = other.events(in: range, from: first, through: last, limit: limit, maxBytes: maxBytes, previous: false)
            #expect(bare.events.allSatisfy { $0.previous == nil }, "\(where_): bare")
            if maxBytes == .max {
                let stripped = byKey.events.map { event in
                    var event = event
                    event.previous = nil
                    return event
                }
                #expect(bare.events == stripped && bare.through == byKey.through, "\(where_): bare")
            } else {
                #expect(bare.through >= byKey.through, "\(where_): bare")
            }
        }
    }
}
