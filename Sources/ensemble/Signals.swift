import Dispatch
import Foundation
import Synchronization

/// SIGINT and SIGTERM, caught from the moment this is made (before a slow
/// start-up, so Ctrl-C then still stops cleanly): the first is waited for
/// with ``wait()``; a second one ends the process at once.
final class Interrupts: Sendable {
    private let state = Mutex<(received: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    init() {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        for sig in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .main)
            source.setEventHandler { [self] in received() }
            source.resume()
            signalSources.append(source)
        }
    }

    private func received() {
        let (first, waiter) = state.withLock { state in
            defer { state.received = true; state.waiter = nil }
            return (!state.received, state.waiter)
        }
        guard first else {
            FileHandle.standardError.write(Data("\nstopping at once\n".utf8))
            exit(130)
        }
        waiter?.resume()
    }

    /// Whether a signal has come.
    var wasReceived: Bool { state.withLock { $0.received } }

    /// Suspends until the first signal (returns at once if it came already).
    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.received { return true }
                state.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// Kept alive for the process's lifetime.
nonisolated(unsafe) var signalSources: [any DispatchSourceSignal] = []

/// For `serve`, whose SIGTERM and SIGINT start ServiceLifecycle's graceful
/// shutdown: a second SIGINT ends the process at once (exit 130), as in
/// `ensemble dev`, and a shutdown still going `limit` after the first
/// signal ends it with exit 1 and a line saying so — rather than
/// ServiceLifecycle's fatalError (a trap and a core dump) after its
/// cancellation timeout. What was acknowledged is in the synced log either
/// way, and the kernel releases the data directory's lock.
final class ShutdownGuard: Sendable {
    private let signals = Mutex<(interrupts: Int, started: Bool)>((0, false))
    private let limit: Duration

    init(limit: Duration) {
        self.limit = limit
        for sig in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [self] in received(sig) }
            source.resume()
            signalSources.append(source)
        }
    }

    private func received(_ sig: Int32) {
        let (first, again) = signals.withLock { state -> (Bool, Bool) in
            defer {
                state.started = true
                if sig == SIGINT { state.interrupts += 1 }
            }
            return (!state.started, sig == SIGINT && state.interrupts >= 1)
        }
        if again {
            FileHandle.standardError.write(Data("\nstopping at once\n".utf8))
            exit(130)
        }
        guard first else { return }
        let seconds = Double(limit.components.seconds)
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
            FileHandle.standardError.write(Data("shutdown did not finish within \(Int(seconds)) s; exiting\n".utf8))
            exit(1)
        }
    }
}
