import ArgumentParser
import Dispatch
import EnsembleServer
import Foundation

/// The `ensemble` command line. Thin: it parses arguments and calls into the
/// modules.
@main
struct Ensemble: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ensemble",
        abstract: "Ensemble: a strongly consistent control plane that speaks etcd's v3 API.",
        subcommands: [Serve.self, Dev.self, KV.self, MemberCommand.self, StatusCommand.self, SnapshotCommand.self, Bench.self])

    static func main() async {
        await main(Serve.etcdBooleans(Array(CommandLine.arguments.dropFirst())))
    }
}

/// True exactly once.
final class OnceFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var taken = false
    func take() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if taken { return false }
        taken = true
        return true
    }
}

/// Writes a line to standard output at once (unbuffered), so progress shows
/// also when the output is piped to a file.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
