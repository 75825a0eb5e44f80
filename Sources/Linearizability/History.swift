/// One client operation as a test recorded it: when it was called, when (if
/// ever) it returned, and what it did.
///
/// An operation whose outcome is unknown — a write that timed out or whose
/// connection dropped — has `returned == nil`: it may have taken effect at any
/// point after its call, or never (Porcupine and Jepsen model it as returning at
/// +∞, which is the same thing).
public struct ClientOperation<Input: Sendable & Hashable, Output: Sendable & Hashable>: Sendable, Hashable {
    public var client: Int
    public var input: Input
    /// Nil when the outcome is unknown.
    public var output: Output?
    public var called: UInt64
    public var returned: UInt64?

    public init(client: Int, input: Input, output: Output?, called: UInt64, returned: UInt64?) {
        self.client = client
        self.input = input
        self.output = output
        self.called = called
        self.returned = returned
    }
}

/// A sequential specification: what a single correct copy of the object does.
public protocol SequentialModel {
    associatedtype State: Hashable & Sendable
    associatedtype Input: Hashable & Sendable
    associatedtype Output: Hashable & Sendable

    static var initial: State { get }
    /// Applies `input` to `state`. Returns nil when the operation could not have
    /// produced `output` from `state`; `output == nil` (unknown outcome) must be
    /// accepted whenever the input can apply.
    static func step(_ state: State, _ input: Input, _ output: Output?) -> State?
    /// Splits a history into independent parts (one per key), checked separately.
    static func partition(_ input: Input) -> AnyHashable
    /// Rewrites one partition into an equivalent, smaller search problem: it
    /// must be linearizable exactly when the original is. The default keeps it.
    static func simplify(_ ops: [ClientOperation<Input, Output>]) -> [ClientOperation<Input, Output>]
    /// For an operation that changes the state only when it finds one state
    /// there (a compare-and-swap): that state. Nil when not so guarded.
    static func guardState(_ input: Input) -> State?
    /// The state an operation leaves when it takes effect, when it sets one
    /// outright (a put, a compare-and-swap that applies). Together with
    /// `guardState` this tells the search when an open guarded operation can
    /// never take effect again, so whether it was placed stops mattering.
    static func resultState(_ input: Input) -> State?
}

extension SequentialModel {
    public static func simplify(_ ops: [ClientOperation<Input, Output>]) -> [ClientOperation<Input, Output>] { ops }
    public static func guardState(_ input: Input) -> State? { nil }
    public static func resultState(_ input: Input) -> State? { nil }
}
