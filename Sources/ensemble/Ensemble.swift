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
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "serve" {
            let flags = EtcdEnvironment.flagNames(inHelp: Serve.helpMessage(columns: 10_000))
                .union(MemberConfiguration.ignoredEtcdKeys)
            switch EtcdEnvironment.apply(
                to: arguments, environment: ProcessInfo.processInfo.environment, flags: flags,
                defaultOnly: MemberConfiguration.defaultOnlyEtcdKeys)
            {
            case let .success((withEnvironment, notes)):
                arguments = withEnvironment
                for note in notes { FileHandle.standardError.write(Data("\(note)\n".utf8)) }
            case let .failure(error):
                FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
                Foundation.exit(1)
            }
            let (kept, notes) = IgnoredEtcdFlags.remove(from: arguments)
            arguments = kept
            for note in notes { FileHandle.standardError.write(Data("\(note)\n".utf8)) }
        }
        await main(Serve.etcdBooleans(arguments))
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

/// Writes a line to standard error at once.
func complain(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
