import KV
import Raft
import Testing

/// Model-based test: random operations run against the store and against a
/// deliberately naive model (a full copy of the key space per revision); every
/// read at every retained revision must agree.
struct Model {
    var revision: Int64 = 1
    var compacted: Int64 = 0
    var states: [Int64: [[UInt8]: KeyValue]] = [1: [:]]

    var current: [[UInt8]: KeyValue] { states[revision] ?? [:] }

    static func inRange(_ key: [UInt8], _ start: [UInt8], _ end: [UInt8]) -> Bool {
        if end.isEmpty { return key == start }
        if !start.lexicographicallyPrecedes(key) && key != start { return false }
        if end == [0] { return true }
        return key.lexicographicallyPrecedes(end)
    }

    /// Applies a batch of changes as one revision (nothing if it changes nothing).
    mutating func commit(_ change: (inout [[UInt8]: KeyValue], Int64) -> Bool) {
        var next = current
        if change(&next, revision + 1) {
            revision += 1
            states[revision] = next
        }
    }

    mutating func put(_ key: [UInt8], _ value: [UInt8]) {
        commit { state, rev in
            let old = state[key]
            state[key] = KeyValue(key: key, createRevision: old?.createRevision ?? rev, modRevision: rev,
                                  version: (old?.version ?? 0) + 1, value: value, lease: 0)
            return true
        }
    }

    mutating func delete(_ start: [UInt8], _ end: [UInt8]) -> Int {
        var count = 0
        commit { state, _ in
            for key in state.keys where Model.inRange(key, start, end) {
                state[key] = nil
                count += 1
            }
            return count > 0
        }
        return count
    }

    func range(_ start: [UInt8], _ end: [UInt8], at rev: Int64, limit: Int64) -> (kvs: [KeyValue], count: Int64, more: Bool) {
        let state = states[rev] ?? [:]
        let all = state.values.filter { Model.inRange($0.key, start, end) }.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        let limited = limit > 0 ? Array(all.prefix(Int(limit))) : all
        return (limited, Int64(all.count), limit > 0 && all.count > Int(limit))
    }
}

@Suite struct ModelTests {
    @Test(arguments: 1...12)
    func randomHistoriesAgreeWithTheModel(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let store = MVCCStore()
        var model = Model()
        let keys = (0..<12).map { b("k\($0 % 4)\($0)") } + [b("a"), b("z")]
        func randomKey() -> [UInt8] { keys[Int.random(in: 0..<keys.count, using: &rng)] }
        func randomRange() -> ([UInt8], [UInt8]) {
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: return (randomKey(), [])
            case 1: return (randomKey(), [0])
            case 2: return ([0], [0])
            default:
                let a = randomKey(), c = randomKey()
                return a.lexicographicallyPrecedes(c) ? (a, c) : (c, a)
            }
        }
        for step in 0..<400 {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0...4:
                let key = randomKey()
                let value = b("v\(step)")
                _ = try store.put(PutRequest(key: key, value: value))
                model.put(key, value)
            case 5:
                let (start, end) = randomRange()
                let (response, events) = try store.deleteRange(DeleteRangeRequest(key: start, rangeEnd: end))
                let deleted = model.delete(start, end)
                #expect(response.deleted == Int64(deleted) && events.count == deleted, "step \(step)")
            case 6:
                // A txn putting two keys atomically when a compare holds.
                let key = randomKey()
                let version = model.current[key]?.version ?? 0
                let other = randomKey()
                guard other != key else { continue }
                let txn = TxnRequest(
                    compare: [Compare(key: key, .version(version), .equal)],
                    success: [.put(PutRequest(key: key, value: b("t\(step)"))), .put(PutRequest(key: other, value: b("t\(step)")))])
                let (response, _) = try store.txn(txn)
                #expect(response.succeeded)
                model.commit { state, rev in
                    for k in [key, other] {
                        let old = state[k]
                        state[k] = KeyValue(key: k, createRevision: old?.createRevision ?? rev, modRevision: rev,
                                            version: (old?.version ?? 0) + 1, value: b("t\(step)"), lease: 0)
                    }
                    return true
                }
            case 7 where Int.random(in: 0..<8, using: &rng) == 0 && model.revision > model.compacted + 1:
                let target = Int64.random(in: (model.compacted + 1)...model.revision, using: &rng)
                try store.compact(target)
                model.compacted = target
            default:
                break
            }
            #expect(store.revision == model.revision, "step \(step)")
            // Read at a random retained revision.
            let (start, end) = randomRange()
            let at = Int64.random(in: max(model.compacted, 1)...model.revision, using: &rng)
            var request = RangeRequest(key: start, rangeEnd: end)
            request.revision = at
            request.limit = Int64.random(in: 0...3, using: &rng)
            let got = try store.range(request)
            let want = model.range(start, end, at: at, limit: request.limit)
            #expect(got.kvs == want.kvs, "step \(step): range \(start)..\(end) at \(at)")
            #expect(got.count == want.count && got.more == want.more, "step \(step)")
        }
    }
}

/// The Raft core's seeded generator, so each seed is one reproducible run.
typealias SeededRandom = SplitMix64
