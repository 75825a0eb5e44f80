import Foundation

/// Runs `work` — blocking disk I/O, or a wait for another thread — on a
/// thread of its own and awaits it. The cooperative pool has one thread per
/// core (two here), and every member in the process serves requests from it:
/// a member starting (replaying its log) or stopping (syncing it) must not
/// hold one of those threads meanwhile.
func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// ``offPool(_:)`` for work that cannot fail.
func offPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: work()) }.start()
    }
}

/// Hands a value that is not `Sendable` to the thread ``offPool(_:)`` runs
/// on. Only for a handover: the caller must not touch the value until that
/// work is done (a state machine that no other thread has seen yet).
struct Handover<Value>: @unchecked Sendable {
    let value: Value
}
