/// Decides whether a concurrent history is linearizable against a sequential
/// model: the Wing–Gong search with Lowe's memoization, as in Porcupine and
/// Knossos (Lowe, "Testing for linearizability", 2017).
///
/// The history is split per partition (per key); each part is searched for an
/// order of its operations that respects real time (an operation that returned
/// before another was called comes first) and that the model accepts.
///
/// Operations of unknown outcome stay open to the end, so each one could be
/// placed at any later point, and a naive search grows exponentially with their
/// number. Two reductions keep it tractable without changing the verdict:
/// the model may `simplify` a partition first (drop operations that cannot
/// matter, merge values nobody observes), and open operations with equal inputs
/// are interchangeable, so they are linearized in the order they were called.
/// A third keeps the memo small: an open compare-and-swap whose expected state
/// can never come back is dead, and configurations that differ only in whether
/// dead operations were placed are one configuration.
public enum LinearizabilityChecker<Model: SequentialModel> {
    public typealias Op = ClientOperation<Model.Input, Model.Output>

    public enum Verdict: Sendable, Equatable {
        case linearizable
        /// No valid order exists for the operations of this partition.
        case violation(partition: String, operations: Int)
        /// The search budget ran out before a decision.
        case unknown(partition: String)
    }

    /// Checks every partition; the first violation found is reported.
    public static func check(_ history: [Op], budget: Int = 5_000_000) -> Verdict {
        var parts: [AnyHashable: [Op]] = [:]
        var order: [AnyHashable] = []
        for op in history {
            let key = Model.partition(op.input)
            if parts[key] == nil { order.append(key) }
            parts[key, default: []].append(op)
        }
        var verdict = Verdict.linearizable
        for key in order {
            switch checkPartition(Model.simplify(parts[key] ?? []), budget: budget) {
            case .linearizable: continue
            case .violation: return .violation(partition: "\(key)", operations: parts[key]?.count ?? 0)
            case .unknown: verdict = .unknown(partition: "\(key)")
            }
        }
        return verdict
    }

    enum Partial { case linearizable, violation, unknown }

    /// One entry of the time line: the call or the return of an operation.
    struct Event {
        var op: Int
        var isCall: Bool
        var time: UInt64
        /// For a call: the index of its return event.
        var match: Int
        var previous: Int
        var next: Int
    }

    struct CacheKey: Hashable {
        var linearized: [UInt64]
        var state: Model.State
    }

    static func checkPartition(_ ops: [Op], budget: Int) -> Partial {
        if ops.isEmpty { return .linearizable }
        // Build the time line: calls sort before returns at equal times (closed
        // intervals overlap), and an unknown outcome returns at +∞.
        var raw: [(op: Int, isCall: Bool, time: UInt64)] = []
        for (i, op) in ops.enumerated() {
            raw.append((i, true, op.called))
            raw.append((i, false, op.returned ?? .max))
        }
        raw.sort { a, b in
            if a.time != b.time { return a.time < b.time }
            if a.isCall != b.isCall { return a.isCall }
            return a.op < b.op
        }
        // A doubly linked list with a head sentinel at index 0.
        var events = [Event(op: -1, isCall: false, time: 0, match: -1, previous: -1, next: 1)]
        var returnIndex = [Int](repeating: -1, count: ops.count)
        for (i, e) in raw.enumerated() {
            events.append(Event(op: e.op, isCall: e.isCall, time: e.time, match: -1, previous: i, next: i + 2))
            if !e.isCall { returnIndex[e.op] = i + 1 }
        }
        events[events.count - 1].next = -1
        for i in 1..<events.count where events[i].isCall { events[i].match = returnIndex[events[i].op] }

        // Open operations with the same input are interchangeable: each may go
        // only after the one with the same input called before it. Any order the
        // search could find can be renamed into that one, so nothing is lost.
        var previousTwin = [Int](repeating: -1, count: ops.count)
        var lastOpen: [Model.Input: Int] = [:]
        for e in raw where e.isCall && ops[e.op].returned == nil {
            let input = ops[e.op].input
            previousTwin[e.op] = lastOpen[input] ?? -1
            lastOpen[input] = e.op
        }

        func lift(_ call: Int) {
            let ret = events[call].match
            for i in [call, ret] {
                let p = events[i].previous
                let n = events[i].next
                events[p].next = n
                if n >= 0 { events[n].previous = p }
            }
        }
        func unlift(_ call: Int) {
            let ret = events[call].match
            for i in [ret, call] {
                let p = events[i].previous
                let n = events[i].next
                events[p].next = i
                if n >= 0 { events[n].previous = i }
            }
        }

        // Open guarded operations, each with the operations that can produce its
        // guard state. Dead (its guard is not the state and nothing left can
        // make it so), it can only be a no-op: the memo counts it as placed.
        var guarded: [(op: Int, state: Model.State, enablers: [Int])] = []
        for (i, op) in ops.enumerated() where op.returned == nil {
            guard let state = Model.guardState(op.input) else { continue }
            let enablers = ops.indices.filter { $0 != i && Model.resultState(ops[$0].input) == state }
            guarded.append((i, state, enablers))
        }
        func isSet(_ bits: [UInt64], _ op: Int) -> Bool { bits[op / 64] & (1 << UInt64(op % 64)) != 0 }
        func settled(_ bits: [UInt64], _ state: Model.State) -> [UInt64] {
            var bits = bits
            for g in guarded where !isSet(bits, g.op) && g.state != state && g.enablers.allSatisfy({ isSet(bits, $0) }) {
                bits[g.op / 64] |= 1 << UInt64(g.op % 64)
            }
            return bits
        }

        let words = (ops.count + 63) / 64
        var linearized = [UInt64](repeating: 0, count: words)
        var cache = Set<CacheKey>()
        var stack: [(call: Int, state: Model.State)] = []
        var state = Model.initial
        var cursor = events[0].next
        var steps = 0
        while cursor >= 0 {
            steps += 1
            if steps > budget { return .unknown }
            let event = events[cursor]
            if event.isCall {
                let op = ops[event.op]
                let twin = previousTwin[event.op]
                if twin < 0 || isSet(linearized, twin), let next = Model.step(state, op.input, op.output) {
                    var bits = linearized
                    bits[event.op / 64] |= 1 << UInt64(event.op % 64)
                    let key = CacheKey(linearized: settled(bits, next), state: next)
                    // Placing a dead operation leaves the configuration as the
                    // memo already counts it: not a new one, but still a step.
                    if cache.insert(key).inserted || key == CacheKey(linearized: settled(linearized, state), state: state) {
                        stack.append((cursor, state))
                        state = next
                        linearized = bits
                        lift(cursor)
                        cursor = events[0].next
                        continue
                    }
                }
                cursor = event.next
            } else {
                // A return whose operation is not linearized yet: backtrack.
                guard let (call, previousState) = stack.popLast() else { return .violation }
                let op = events[call].op
                linearized[op / 64] &= ~(1 << UInt64(op % 64))
                state = previousState
                unlift(call)
                cursor = events[call].next
            }
        }
        return .linearizable
    }
}
