import Linearizability
import Raft
import Testing

typealias KV = LinearizabilityChecker<KeyValueModel>
typealias Op = KV.Op

func put(_ client: Int, _ key: String, _ value: String, _ call: UInt64, _ ret: UInt64?) -> Op {
    Op(client: client, input: .put(key: key, value: value), output: ret == nil ? nil : .ok, called: call, returned: ret)
}

func get(_ client: Int, _ key: String, _ value: String?, _ call: UInt64, _ ret: UInt64) -> Op {
    Op(client: client, input: .get(key: key), output: .value(value), called: call, returned: ret)
}

func cas(_ client: Int, _ key: String, _ expected: String?, _ value: String, _ swapped: Bool?, _ call: UInt64, _ ret: UInt64?) -> Op {
    Op(client: client, input: .cas(key: key, expected: expected, value: value),
       output: swapped.map { .swapped($0) }, called: call, returned: ret)
}

/// The checker's self-tests: it must accept what is linearizable and reject the
/// classic anomalies (otherwise the fault tests built on it could not fail).
@Suite struct CheckerTests {
    @Test func acceptsSequentialAndConcurrentHistories() {
        #expect(KV.check([put(1, "x", "1", 0, 1), get(2, "x", "1", 2, 3)]) == .linearizable)
        // Overlapping put and get: the get may see either value.
        #expect(KV.check([put(1, "x", "1", 0, 10), get(2, "x", nil, 1, 2)]) == .linearizable)
        #expect(KV.check([put(1, "x", "1", 0, 10), get(2, "x", "1", 1, 2)]) == .linearizable)
    }

    @Test func rejectsAStaleRead() {
        let history = [put(1, "x", "1", 0, 1), put(1, "x", "2", 2, 3), get(2, "x", "1", 4, 5)]
        #expect(KV.check(history) != .linearizable)
    }

    @Test func rejectsAReadOfAValueNeverWritten() {
        #expect(KV.check([put(1, "x", "1", 0, 1), get(2, "x", "9", 2, 3)]) != .linearizable)
    }

    @Test func rejectsReadsThatGoBackInTime() {
        // Two sequential reads see 2 then 1, with both writes long done.
        let history = [put(1, "x", "1", 0, 5), put(2, "x", "2", 0, 5), get(3, "x", "2", 6, 7), get(3, "x", "1", 8, 9)]
        #expect(KV.check(history) != .linearizable)
    }

    @Test func rejectsALostUpdate() {
        // Two compare-and-swaps from the same expected value cannot both win.
        let history = [put(1, "x", "0", 0, 1), cas(2, "x", "0", "a", true, 2, 5), cas(3, "x", "0", "b", true, 2, 5)]
        #expect(KV.check(history) != .linearizable)
    }

    @Test func unknownOutcomesMayOrMayNotHaveHappened() {
        // A write that timed out may show up later...
        #expect(KV.check([put(1, "x", "1", 0, nil), get(2, "x", "1", 5, 6)]) == .linearizable)
        // ...or never.
        #expect(KV.check([put(1, "x", "1", 0, nil), get(2, "x", nil, 5, 6)]) == .linearizable)
        // But not before it was called.
        #expect(KV.check([get(2, "x", "1", 0, 1), put(1, "x", "1", 5, nil)]) != .linearizable)
        // Once seen it cannot vanish.
        #expect(KV.check([put(1, "x", "1", 0, nil), get(2, "x", "1", 5, 6), get(2, "x", nil, 7, 8)]) != .linearizable)
    }

    @Test func keysAreIndependent() {
        let history = [put(1, "x", "1", 0, 1), put(1, "y", "2", 0, 1), get(2, "x", "1", 2, 3), get(2, "y", nil, 2, 3)]
        guard case let .violation(partition, _) = KV.check(history) else {
            Issue.record("expected a violation on y")
            return
        }
        #expect(partition == "y")
    }

    /// Histories generated from a real atomic register with random overlaps are
    /// all accepted; changing one read to a value it could not have seen makes
    /// them rejected.
    @Test(arguments: 1...20)
    func randomRegisterHistories(seed: UInt64) {
        var rng = SplitRandom(seed: seed)
        var value: String? = nil
        var history: [Op] = []
        var time: UInt64 = 0
        var written: Set<String> = []
        for i in 0..<40 {
            // Each operation takes effect at `point`, inside [call, return].
            time += UInt64.random(in: 1...3, using: &rng)
            let point = time
            let call = point - UInt64.random(in: 0...min(point, 6), using: &rng)
            let ret = point + UInt64.random(in: 0...6, using: &rng)
            let client = Int.random(in: 0..<5, using: &rng)
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                value = "v\(i)"
                written.insert("v\(i)")
                history.append(put(client, "k", "v\(i)", call, ret))
            case 1:
                history.append(get(client, "k", value, call, ret))
            default:
                let expected = Bool.random(using: &rng) ? value : "v\(Int.random(in: 0...i, using: &rng))"
                let swapped = expected == value
                if swapped { value = "c\(i)"; written.insert("c\(i)") }
                history.append(cas(client, "k", expected, "c\(i)", swapped, call, ret))
            }
        }
        #expect(KV.check(history) == .linearizable, "seed \(seed)")
        // A read of a value nobody wrote is impossible.
        if let index = history.firstIndex(where: { if case .get = $0.input { true } else { false } }) {
            var broken = history
            broken[index].output = .value("never-written")
            #expect(KV.check(broken) != .linearizable, "seed \(seed)")
        }
    }

    /// A loaded fault test leaves dozens of writes of unknown outcome open to the
    /// end of the history. The search must still decide, and quickly.
    @Test func manyOpenWritesStillDecide() {
        var history: [Op] = []
        for i in 0..<80 {
            let t = UInt64(i * 10)
            history.append(put(1, "x", "known\(i)", t, t + 2))
            history.append(put(2, "x", "open\(i)", t + 1, nil))
            history.append(cas(3, "x", "known\(i)", "swap\(i)", nil, t + 1, nil))
            history.append(get(4, "x", "known\(i)", t + 3, t + 4))
        }
        #expect(KV.check(history, budget: 5_000_000) == .linearizable)
        // The same history with one stale read: found, not given up on.
        var stale = history
        stale.append(get(4, "x", "known3", 500, 501))
        #expect(KV.check(stale, budget: 5_000_000) == .violation(partition: "x", operations: stale.count))
        // An open write that someone read is real again: its value can be seen
        // after it was called, and then no older value can.
        var seen = history
        seen.append(get(4, "x", "open5", 56, 57))
        #expect(KV.check(seen, budget: 5_000_000) == .linearizable)
        seen.append(get(4, "x", "known5", 58, 59))
        #expect(KV.check(seen, budget: 5_000_000) != .linearizable)
    }

    /// The checker, with its reductions, agrees with brute force (every order
    /// of every subset that keeps the known operations) on small random
    /// histories with open operations, linearizable or not.
    @Test(arguments: 1...300)
    func agreesWithBruteForce(seed: UInt64) {
        var rng = SplitRandom(seed: seed)
        let values = ["a", "b", "c"]
        var history: [Op] = []
        for i in 0..<Int.random(in: 2...7, using: &rng) {
            let call = UInt64.random(in: 0...12, using: &rng)
            let ret: UInt64? = Int.random(in: 0..<3, using: &rng) == 0 ? nil : call + UInt64.random(in: 0...6, using: &rng)
            let value = values.randomElement(using: &rng) ?? "a"
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: history.append(put(i, "k", value, call, ret))
            case 1: history.append(get(i, "k", Bool.random(using: &rng) ? nil : value, call, ret ?? call + 1))
            default:
                let expected: String? = Bool.random(using: &rng) ? nil : values.randomElement(using: &rng)
                history.append(cas(i, "k", expected, value + "\(i)", ret == nil ? nil : Bool.random(using: &rng), call, ret))
            }
        }
        let expected = bruteForce(history)
        #expect((KV.check(history) == .linearizable) == expected, "seed \(seed): \(history)")
    }
}

/// Tries every order of every subset that contains all operations with a known
/// outcome, keeping real-time order; exponential, for tiny histories only.
func bruteForce(_ history: [Op]) -> Bool {
    func search(_ remaining: [Op], _ state: KeyValueModel.State) -> Bool {
        if remaining.allSatisfy({ $0.returned == nil }) { return true }
        for (i, op) in remaining.enumerated() {
            // `op` may go next only if no other remaining op returned before it was called.
            if remaining.contains(where: { ($0.returned ?? .max) < op.called }) { continue }
            var rest = remaining
            rest.remove(at: i)
            if let next = KeyValueModel.step(state, op.input, op.output), search(rest, next) { return true }
            if op.returned == nil, search(rest, state) { return true }
        }
        return false
    }
    return search(history, KeyValueModel.initial)
}

/// The Raft core's seeded generator, so each seed is one reproducible run.
typealias SplitRandom = SplitMix64
