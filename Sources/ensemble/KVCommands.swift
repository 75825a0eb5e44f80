import ArgumentParser
import EnsembleAPI
import EnsembleClient
import Foundation
import KV

/// `ensemble kv get|put|del|watch`: the key–value API from the command line
/// (etcdctl's output: a key line, then a value line).
struct KV: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv", abstract: "Read, write, delete and watch keys.",
        subcommands: [Get.self, Put.self, Delete.self, Watch.self])

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a key, or every key with a prefix.")
        @OptionGroup var client: ClientOptions
        @Argument var key: String
        @Flag(help: "Every key starting with KEY.") var prefix = false
        @Option(help: "Read as of this revision (0: latest).") var rev: Int64 = 0
        @Flag(help: "Serve from the member's local state (serializable).") var serializable = false

        func run() async throws {
            let etcd = try await client.connect()
            var request = Etcdserverpb_RangeRequest()
            (request.key, request.rangeEnd) = keyRange(key, prefix: prefix)
            request.revision = rev
            request.serializable = serializable
            let response = try await etcd.range(request, timeout: client.timeout)
            for kv in response.kvs {
                print(String(decoding: kv.key, as: UTF8.self))
                print(String(decoding: kv.value, as: UTF8.self))
            }
            await etcd.connection.close()
        }
    }

    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a key.")
        @OptionGroup var client: ClientOptions
        @Argument var key: String
        @Argument var value: String
        @Option(help: "Attach to this lease (hex id).") var lease: String?

        func run() async throws {
            let etcd = try await client.connect()
            var request = Etcdserverpb_PutRequest()
            request.key = Data(key.utf8)
            request.value = Data(value.utf8)
            if let lease {
                guard let id = Int64(lease, radix: 16) else { throw ValidationError("--lease must be a hex id") }
                request.lease = id
            }
            let response = try await etcd.put(request, timeout: client.timeout)
            print("OK (revision \(response.header.revision))")
            await etcd.connection.close()
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "del", abstract: "Delete a key, or every key with a prefix.")
        @OptionGroup var client: ClientOptions
        @Argument var key: String
        @Flag(help: "Every key starting with KEY.") var prefix = false

        func run() async throws {
            let etcd = try await client.connect()
            var request = Etcdserverpb_DeleteRangeRequest()
            (request.key, request.rangeEnd) = keyRange(key, prefix: prefix)
            let response = try await etcd.deleteRange(request, timeout: client.timeout)
            print(response.deleted)
            await etcd.connection.close()
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print changes to a key or prefix until Ctrl-C.")
        @OptionGroup var client: ClientOptions
        @Argument var key: String
        @Flag(help: "Every key starting with KEY.") var prefix = false
        @Option(help: "Start at this revision (replays history).") var rev: Int64 = 0

        func run() async throws {
            let etcd = try await client.connect()
            var create = Etcdserverpb_WatchCreateRequest()
            (create.key, create.rangeEnd) = keyRange(key, prefix: prefix)
            create.startRevision = rev
            var request = Etcdserverpb_WatchRequest()
            request.createRequest = create
            let stream = etcd.watch()
            try stream.send(request)
            for try await response in stream.responses {
                if response.canceled {
                    // clientv3's WatchResponse.Err(): a compacted start says so.
                    let why = response.compactRevision != 0 ? KVError.compacted.description : response.cancelReason
                    complain("watch was canceled (\(why))")
                    break
                }
                // Written at once (not held back when piped, as print would).
                for event in response.events {
                    say(event.type == .put ? "PUT" : "DELETE")
                    say(String(decoding: event.kv.key, as: UTF8.self))
                    say(String(decoding: event.kv.value, as: UTF8.self))
                }
            }
            // Canceled (its start compacted, say) or ended by the server:
            // etcdctl's words and exit status (5, ExitInterrupted), not a usage error.
            complain("Error: watch is canceled by the server")
            throw ExitCode(5)
        }
    }
}

/// The key and range end a command sends: `key` alone, or every key starting
/// with it — every key at all for an empty prefix, as etcdctl sends it
/// (`\0` to `\0`: an empty key is refused).
func keyRange(_ key: String, prefix: Bool) -> (key: Data, rangeEnd: Data) {
    guard prefix else { return (Data(key.utf8), Data()) }
    if key.isEmpty { return (Data([0]), Data([0])) }
    return (Data(key.utf8), prefixEnd(key))
}

/// The range end that covers every key starting with `key` (etcd's prefix end).
func prefixEnd(_ key: String) -> Data {
    var bytes = Array(key.utf8)
    while let last = bytes.last {
        if last < 0xFF {
            bytes[bytes.count - 1] = last + 1
            return Data(bytes)
        }
        bytes.removeLast()
    }
    return Data([0])
}
