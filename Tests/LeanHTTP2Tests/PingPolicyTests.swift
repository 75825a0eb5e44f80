import NIOCore
import Testing

@testable import LeanHTTP2

/// A server's limit on how often a client may ping (grpc-go's enforcement,
/// etcd's `--grpc-keepalive-min-time`).
@Suite struct PingPolicyTests {
    static let ping = TestFrame(type: 6, stream: 0, payload: Array(repeating: 7, count: 8)).encoded()

    func peer(permitWithoutStream: Bool = false) -> TestPeer {
        var configuration = HTTP2Connection.Configuration()
        configuration.pingPolicy = .init(minimumInterval: .seconds(5), permitWithoutStream: permitWithoutStream)
        var peer = TestPeer()
        peer.connection = HTTP2Connection(role: .server, configuration: configuration)
        _ = peer.output()
        _ = peer.start()
        return peer
    }

    @Test func theThirdPingTooSoonIsSentAway() {
        var peer = peer()
        peer.send(peer.request(1))  // a call is open: 5 s apart is allowed
        let start = NIODeadline.now()
        for i in 0..<3 {
            let out = peer.send(bytes: Self.ping, at: start + .seconds(Int64(i)))
            #expect(out.map(\.type) == [6] && peer.connection.failure == nil)
        }
        // Strikes at the second, third and fourth ping: more than two.
        let out = peer.send(bytes: Self.ping, at: start + .seconds(3))
        #expect(out.last?.type == 7 && out.last?.errorCode == 0xB)
        #expect(out.last.map { String(decoding: $0.payload.dropFirst(8), as: UTF8.self) } == "too_many_pings")
    }

    @Test func pingsAtTheMinimumIntervalAreFine() {
        var peer = peer()
        peer.send(peer.request(1))
        let start = NIODeadline.now()
        for i in 0..<10 { peer.send(bytes: Self.ping, at: start + .seconds(Int64(i) * 5)) }
        #expect(peer.connection.failure == nil)
    }

    @Test func withNoCallOpenAnyRepeatedPingIsTooSoon() {
        var idle = peer()
        let start = NIODeadline.now()
        for i in 0..<4 { idle.send(bytes: Self.ping, at: start + .minutes(Int64(i) * 10)) }
        #expect(idle.connection.failure == .enhanceYourCalm)
        var permitted = peer(permitWithoutStream: true)
        for i in 0..<4 { permitted.send(bytes: Self.ping, at: start + .minutes(Int64(i) * 10)) }
        #expect(permitted.connection.failure == nil)
    }

    /// grpc-go pings after every response it reads (its flow-control
    /// estimate): a server's DATA or HEADERS clear the strikes.
    @Test func pingsThatFollowAResponseNeverCount() {
        var peer = peer()
        let start = NIODeadline.now()
        for i in 0..<20 {
            let id = UInt32(2 * i + 1)
            peer.send(peer.request(id, endStream: true))
            var block = ByteBuffer()
            block.writeInteger(HPACKLiterals.status200)
            peer.connection.sendHeaders(stream: id, block: block, endStream: true)
            _ = peer.output()
            peer.send(bytes: Self.ping, at: start + .milliseconds(Int64(i)))
        }
        #expect(peer.connection.failure == nil)
    }

    @Test func withoutAPolicyPingsAreOnlyAFloodRisk() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        let start = NIODeadline.now()
        for i in 0..<100 { peer.send(bytes: Self.ping, at: start + .milliseconds(Int64(i) * 100)) }
        #expect(peer.connection.failure == nil)
    }
}
