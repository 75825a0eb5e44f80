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
