import EnsembleServer
import Foundation
import NIOCore
import NIOPosix
import Testing

/// A member whose port is taken stops with Go's words for it, naming the
/// address (it said `bind(descriptor:ptr:bytes:)`), and a start with free
/// ports on the same directory then succeeds (CLI review findings).
@Suite(.timeLimit(.minutes(1))) struct ListenFailureTests {
    @Test func aTakenPortIsNamedAndTheMemberCanStartAgain() async throws {
        let directory = NSTemporaryDirectory() + "ensemble-listen-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let taken = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let takenPort = try #require(taken.localAddress?.port)
        let ports = try freePortsForTests(2)

        // The client port.
        do {
            let member = try await EnsembleMember.start(singleMember("a", directory: directory, clientPort: takenPort, peerPort: ports[0]))
            Issue.record("started on a taken client port")
            await member.shutdown()
        } catch {
            #expect("\(error)" == "listen tcp 127.0.0.1:\(takenPort): bind: address already in use")
        }
        // Nothing of the failed first start stays: no bootstrapped log that
        // a retry with other flags would not match.
        #expect(!FileManager.default.fileExists(atPath: directory + "/member"))
        // The peer port.
        do {
            let member = try await EnsembleMember.start(singleMember("a", directory: directory, clientPort: ports[1], peerPort: takenPort))
            Issue.record("started on a taken peer port")
            await member.shutdown()
        } catch {
            #expect("\(error)" == "listen tcp 127.0.0.1:\(takenPort): bind: address already in use")
        }
        // The failed starts left the directory and the free ports usable.
        let member = try await EnsembleMember.start(singleMember("a", directory: directory, clientPort: ports[1], peerPort: ports[0]))
        await member.shutdown()
        try await taken.close()
    }
}
