@testable import EnsembleClient
import NIOCore
import NIOPosix
import Testing

/// A connection asked for a user timeout carries it on its socket (Linux
/// TCP_USER_TIMEOUT, 18): a link lost silently in the network then ends in
/// seconds, not the kernel's ~15 minutes of retransmissions.
@Suite struct UserTimeoutTests {
    @Test func theUserTimeoutIsSetOnTheSocket() async throws {
        #if os(Linux)
        let server = try await TestServer.start()
        defer { Task { await server.stop() } }
        var options = GRPCConnection.Options()
        options.userTimeout = .seconds(3)
        let connection = try await GRPCConnection.connect(
            host: "127.0.0.1", port: server.port, group: MultiThreadedEventLoopGroup.singleton, options: options)
        let option = ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: 18))
        #expect(try await connection.channel.getOption(option).get() == 3_000)
        await connection.close()
        #endif
    }
}
