import EnsembleClient
@testable import EnsembleServer
import Raft
import Testing

/// The gRPC framing this server parses itself: length-prefixed messages and
/// `grpc-timeout`.
@Suite struct GRPCWireTests {
    func frame(_ message: [UInt8], flag: UInt8 = 0) -> [UInt8] {
        let n = UInt32(message.count)
        return [flag, UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + message
    }

    @Test func messagesSplitAtEveryByteBoundaryComeOutWhole() throws {
        let messages: [[UInt8]] = [[1, 2, 3], [], Array(repeating: 7, count: 300), [9]]
        let stream = messages.flatMap { frame($0) }
        for cut in 0...stream.count {
            var reader = GRPCMessageReader(maxMessageBytes: 1_000)
            var got = try reader.append(stream[..<cut])
            got += try reader.append(stream[cut...])
            #expect(got == messages, "cut at \(cut)")
            #expect(reader.pendingBytes == 0)
        }
    }

    @Test func oversizedCompressedAndMalformedAreRefused() {
        var reader = GRPCMessageReader(maxMessageBytes: 10)
        #expect(throws: GRPCMessageReader.Failure.tooLarge(11)) { try reader.append(frame(Array(repeating: 0, count: 11))) }
        reader = GRPCMessageReader(maxMessageBytes: 10)
        #expect(throws: GRPCMessageReader.Failure.compressed) { try reader.append(frame([1], flag: 1)) }
        reader = GRPCMessageReader(maxMessageBytes: 10)
        #expect(throws: GRPCMessageReader.Failure.malformed) { try reader.append(frame([1], flag: 2)) }
    }

    /// Random bytes in random pieces: the reader either yields messages or
    /// refuses, and never holds more than one message's worth of bytes.
    @Test func randomInputNeverCrashes() {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<2_000 {
            var reader = GRPCMessageReader(maxMessageBytes: 64)
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let piece = (0..<Int.random(in: 0...40, using: &rng)).map { _ in
                    // Mostly small bytes, so plausible headers occur often.
                    UInt8.random(in: 0...(Bool.random(using: &rng) ? 3 : 255), using: &rng)
                }
                guard (try? reader.append(piece)) != nil else { break }
                #expect(reader.pendingBytes <= 64 + 5)
            }
        }
    }

    @Test func grpcTimeoutUnits() {
        #expect(parseGRPCTimeout("5S") == .seconds(5))
        #expect(parseGRPCTimeout("100m") == .milliseconds(100))
        #expect(parseGRPCTimeout("2H") == .seconds(7200))
        #expect(parseGRPCTimeout("3M") == .seconds(180))
        #expect(parseGRPCTimeout("7u") == .microseconds(7))
        #expect(parseGRPCTimeout("9n") == .nanoseconds(9))
        #expect(parseGRPCTimeout("S") == nil)
        #expect(parseGRPCTimeout("12x") == nil)
        #expect(parseGRPCTimeout("123456789S") == nil, "at most 8 digits")
        #expect(parseGRPCTimeout("-1S") == nil)
        // The largest legal value is 11,000 years: in nanoseconds it saturates
        // instead of trapping (found in review: it crashed the server).
        let largest = parseGRPCTimeout("99999999H")
        #expect(largest == .seconds(99_999_999 * 3600))
        #expect(largest?.nanosecondsSaturated == .max)
        #expect(Duration.milliseconds(1500).nanosecondsSaturated == 1_500_000_000)
    }

    /// Peer URLs as etcd's types.NewURLs takes them (MemberAdd, MemberUpdate).
    @Test func peerURLsAreTrimmedSortedAndWithoutPath() {
        #expect(ClusterService.peerURLs(["http://b:2380", " http://a:2380 "]) == ["http://a:2380", "http://b:2380"])
        #expect(ClusterService.peerURLs(["http://a:2380/"]) == nil, "a path, even /")
        #expect(ClusterService.peerURLs(["http://a"]) == nil, "no port")
        #expect(ClusterService.peerURLs(["ftp://a:21"]) == nil)
        #expect(ClusterService.peerURLs([]) == nil)
    }

    @Test func grpcMessageIsPercentEncoded() {
        #expect(GRPCStatus.percentEncode("etcdserver: 100% done\n") == "etcdserver: 100%25 done%0A")
    }
}
