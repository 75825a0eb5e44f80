import Dispatch
import Foundation

/// Suspends until SIGINT or SIGTERM.
func waitForInterrupt() async {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let once = OnceFlag()
        for sig in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .main)
            source.setEventHandler {
                if once.take() { continuation.resume() }
            }
            source.resume()
            signalSources.append(source)
        }
    }
}

/// Kept alive for the process's lifetime.
nonisolated(unsafe) var signalSources: [any DispatchSourceSignal] = []
