import Foundation
import Testing

/// Responses of more than a MiB of keys and values are encoded off the
/// connection's event loop (`GRPCServerHandler.offLoopBytes`): seen whole by
/// etcdctl, for a Range and for a DeleteRange with prev_kv.
@Suite(.serialized, .timeLimit(.minutes(2))) struct LargeResponseTests {
    @Test func rangesAndDeletesOfSeveralMiBArriveWhole() async throws {
        let f = try await DevClusterFixture()
        let endpoint = "127.0.0.1:\(f.leaderPort)"
        let values = (0..<4).map { String(repeating: Character(UnicodeScalar(UInt8(97 + $0))), count: 700_000) }
        for (i, value) in values.enumerated() {
            let (code, output) = try await etcdctl(endpoints: endpoint, ["put", "big/\(i)"], input: value)
            #expect(code == 0 && output == "OK\n", "\(output.prefix(300))")
        }
        var (code, output) = try await etcdctl(endpoints: endpoint, ["get", "big/", "--prefix", "--print-value-only"])
        #expect(code == 0 && output == values.map { $0 + "\n" }.joined(), "\(output.prefix(300)) (\(output.count) bytes)")
        // A small call on the same member meanwhile is not held up by it.
        async let large = etcdctl(endpoints: endpoint, ["get", "big/", "--prefix", "--keys-only"])
        let (small, answer) = try await f.run(f.leaderPort, "put", "small", "v")
        #expect(small == 0 && answer == "OK\n", "\(answer)")
        #expect(try await large.output.contains("big/3"))
        (code, output) = try await etcdctl(endpoints: endpoint, ["del", "big/", "--prefix", "--prev-kv"])
        #expect(code == 0 && output.hasPrefix("4\n") && output.count > 4 * 700_000, "\(output.prefix(300))")
        await f.close()
    }
}
