import Synchronization

/// A counter shared by tasks (an `Atomic` in a class, so escaping closures can
/// hold it).
final class AtomicCounter: Sendable {
    private let value = Atomic(0)

    init() {}

    var current: Int { value.load(ordering: .relaxed) }

    /// Adds `count`; returns the value before.
    @discardableResult
    func add(_ count: Int = 1) -> Int { value.wrappingAdd(count, ordering: .relaxed).oldValue }
}
