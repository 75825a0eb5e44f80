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
