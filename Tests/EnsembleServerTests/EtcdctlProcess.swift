import Foundation
import Synchronization

/// A long-running etcdctl (watch, lock, elect, lease keep-alive) whose output
/// is collected as it arrives.
final class EtcdctlProcess: Sendable {
    private let process: Process
    private let reader: FileHandle
    private let output = Output()

    final class Output: Sendable {
        let text = Mutex("")
    }

    convenience init(port: Int, _ arguments: [String]) throws {
        try self.init(endpoints: "127.0.0.1:\(port)", arguments)
    }

    init(endpoints: String, _ arguments: [String]) throws {
        let path = ["/usr/bin/etcdctl", "/usr/local/bin/etcdctl"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let path else { throw EtcdctlMissing() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["--endpoints=\(endpoints)"] + arguments
        process.environment = ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        self.process = process
        self.reader = pipe.fileHandleForReading
        pipe.fileHandleForReading.readabilityHandler = { [output] handle in
            let data = handle.availableData
            if data.isEmpty {
                // End of output: a handler left installed on a finished pipe
                // keeps a dispatch source on its descriptor, which crashed
                // libdispatch's event loop once the handle was released.
                handle.readabilityHandler = nil
            } else {
                output.text.withLock { $0 += String(decoding: data, as: UTF8.self) }
            }
        }
        try process.run()
    }

    deinit {
        reader.readabilityHandler = nil
    }

    var text: String { output.text.withLock { $0 } }
    var isRunning: Bool { process.isRunning }

    /// Waits until the output satisfies `condition`; returns whether it did in time.
    func waitFor(timeout: Duration = .seconds(10), _ condition: (String) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition(text) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition(text)
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    /// SIGINT, as Ctrl-C: etcdctl cleans up (an elected candidate resigns).
    func interrupt() {
        if process.isRunning { process.interrupt() }
        process.waitUntilExit()
    }

    /// SIGKILL: the client dies without cleaning up (a lock holder that crashes).
    func kill() {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

struct EtcdctlMissing: Error, CustomStringConvertible {
    var description: String { "etcdctl not found: apt-get install -y etcd-client" }
}
