import EnsembleBench
import Foundation

/// Redraws the progress bar on standard error while a benchmark runs: in
/// place (carriage return) ten times a second on a terminal, once a second
/// otherwise so a log file stays short. ``stop()`` draws the final state and
/// ends the line.
final class BenchProgressDisplay: Sendable {
    private let progress: BenchProgress
    private let task: Task<Void, Never>
    private let started = ContinuousClock.now

    init(_ progress: BenchProgress) {
        self.progress = progress
        let bar = ProgressBar(total: progress.total)
        let started = self.started
        let interval: Duration = isatty(STDERR_FILENO) != 0 ? .milliseconds(100) : .seconds(1)
        task = Task {
            while !Task.isCancelled {
                Self.draw(bar.render(done: progress.done, elapsed: ContinuousClock.now - started), newline: false)
                try? await Task.sleep(for: interval)
            }
        }
    }

    func stop() async {
        task.cancel()
        await task.value
        let bar = ProgressBar(total: progress.total)
        Self.draw(bar.render(done: progress.done, elapsed: ContinuousClock.now - started), newline: true)
    }

    private static func draw(_ line: String, newline: Bool) {
        FileHandle.standardError.write(Data(("\r" + line + (newline ? "\n" : "")).utf8))
    }
}
