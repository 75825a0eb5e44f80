/// A key–value register model for etcd-style histories: put, get and
/// compare-and-swap on independent keys.
public enum KeyValueModel: SequentialModel {
    public enum Input: Hashable, Sendable {
        case put(key: String, value: String)
        case get(key: String)
        /// Sets `value` if the current value is `expected` (nil: absent).
        case cas(key: String, expected: String?, value: String)
    }

    public enum Output: Hashable, Sendable {
        case ok
        /// What a get read (nil: absent).
        case value(String?)
        /// Whether a cas applied.
        case swapped(Bool)
    }

    /// The value of the partition's one key (nil: absent).
    public struct State: Hashable, Sendable {
        public var value: String?
    }

    public static var initial: State { State(value: nil) }

    public static func partition(_ input: Input) -> AnyHashable {
        switch input {
        case let .put(key, _), let .get(key), let .cas(key, _, _): AnyHashable(key)
        }
    }

    /// Stands for every value that no read returned and no compare-and-swap
    /// expected: the model cannot tell such values apart.
    static let unobserved = "\u{0}unobserved"

    /// Two rewrites that keep the verdict:
    /// - A written value nobody observes becomes `unobserved`, so the open
    ///   writes of such values share one input (interchangeable in the search)
    ///   and lead to one state.
    /// - A compare-and-swap of unknown outcome whose expected value is never
    ///   written cannot apply, so it cannot matter: it is dropped.
    public static func simplify(_ ops: [ClientOperation<Input, Output>]) -> [ClientOperation<Input, Output>] {
        var observed: Set<String> = []
        var written: Set<String> = []
        for op in ops {
            switch (op.input, op.output) {
            case let (.get, .value(value?)?): observed.insert(value)
            case let (.put(_, value), _): written.insert(value)
            case let (.cas(_, expected, value), _):
                if let expected { observed.insert(expected) }
                written.insert(value)
            default: break
            }
        }
        // A history that uses the stand-in itself is left as it is.
        if observed.contains(unobserved) || written.contains(unobserved) { return ops }
        return ops.compactMap { op in
            var op = op
            switch op.input {
            case let .put(key, value) where !observed.contains(value):
                op.input = .put(key: key, value: unobserved)
            case let .cas(key, expected, value):
                if op.output == nil, let expected, !written.contains(expected) { return nil }
                if !observed.contains(value) { op.input = .cas(key: key, expected: expected, value: unobserved) }
            default: break
            }
            return op
        }
    }

    public static func guardState(_ input: Input) -> State? {
        if case let .cas(_, expected, _) = input { State(value: expected) } else { nil }
    }

    public static func resultState(_ input: Input) -> State? {
        switch input {
        case let .put(_, value), let .cas(_, _, value): State(value: value)
        case .get: nil
        }
    }

    public static func step(_ state: State, _ input: Input, _ output: Output?) -> State? {
        switch input {
        case let .put(_, value):
            return State(value: value)
        case .get:
            guard let output else { return state }  // a read that failed tells nothing
            return output == .value(state.value) ? state : nil
        case let .cas(_, expected, value):
            let applies = state.value == expected
            switch output {
            case nil: return applies ? State(value: value) : state
            case .swapped(true)?: return applies ? State(value: value) : nil
            case .swapped(false)?: return applies ? nil : state
            default: return nil
            }
        }
    }
}
