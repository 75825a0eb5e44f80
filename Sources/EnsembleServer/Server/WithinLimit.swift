import Dispatch
import Synchronization

/// The value `start` hands to its callback, or nil if none came within
/// `limit`. The work is not cancelled: it runs on, and its late answer is
/// dropped. For waits on the apply thread that an answer must not hang on
/// (a membership answer's barrier, a metrics scrape).
func withinLimit<T: Sendable>(
    _ limit: Duration, _ start: @escaping @Sendable (_ answer: @escaping @Sendable (T?) -> Void) -> Void
) async -> T? {
    await withCheckedContinuation { continuation in
        let answered = Atomic<Bool>(false)
        let answer: @Sendable (T?) -> Void = { value in
            if !answered.exchange(true, ordering: .acquiringAndReleasing) { continuation.resume(returning: value) }
        }
        start(answer)
        DispatchQueue.global().asyncAfter(deadline: .now() + limit.inSeconds) { answer(nil) }
    }
}
