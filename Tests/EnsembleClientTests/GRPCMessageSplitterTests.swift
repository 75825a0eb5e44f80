@testable import EnsembleClient
import NIOCore
import Raft
import Testing

/// The client's splitter of response DATA into length-prefixed messages.
@Suite struct GRPCMessageSplitterTests {
    func frame(_ message: [UInt8], flag: UInt8 = 0) -> [UInt8] {
        let n = UInt32(message.count)
        return [flag, UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + message
    }

    func buffer(_ bytes: some Collection<UInt8>) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    let messages: [[UInt8]] = [[1, 2, 3], [], Array(repeating: 7, count: 300), [9]]

    /// A message arriving a byte at a time costs time in proportion to its
    /// bytes: what is pending is appended to, not copied for every piece.
    /// (A review suspected a copy per piece here, as the server's handler
    /// had; measured, it was not, but the guard stays.)
    @Test func aMessageArrivingAByteAtATimeIsSplitInLinearTime() throws {
        let message = [UInt8](repeating: 7, count: 256 << 10)
        var splitter = GRPCMessageSplitter(maxMessageBytes: 1 << 20)
        let started = ContinuousClock.now
        var got: [[UInt8]] = []
        for byte in frame(message) { got += try splitter.append(buffer([byte])) }
        let elapsed = ContinuousClock.now - started
        #expect(got == [message])
        #expect(elapsed < .seconds(8), "took \(elapsed)")
    }

    @Test func messagesCutAtEveryByteBoundaryComeOutWhole() throws {
        let stream = messages.flatMap { frame($0) }
        for cut in 0...stream.count {
            var splitter = GRPCMessageSplitter(maxMessageBytes: 1_000)
            var got = try splitter.append(buffer(stream[..<cut]))
            got += try splitter.append(buffer(stream[cut...]))
            #expect(got == messages, "cut at \(cut)")
            #expect(splitter.pendingBytes == 0)
        }
    }

    @Test func messagesCutAtEveryPairOfBoundariesComeOutWhole() throws {
        let stream = messages.flatMap { frame($0) }
        for first in stride(from: 0, through: stream.count, by: 3) {
            for second in first...stream.count {
                var splitter = GRPCMessageSplitter(maxMessageBytes: 1_000)
                var got = try splitter.append(buffer(stream[..<first]))
                got += try splitter.append(buffer(stream[first..<second]))
                got += try splitter.append(buffer(stream[second...]))
                #expect(got == messages, "cuts at \(first), \(second)")
            }
        }
    }

    @Test func oneByteAtATime() throws {
        let stream = messages.flatMap { frame($0) }
        var splitter = GRPCMessageSplitter(maxMessageBytes: 1_000)
        var got: [[UInt8]] = []
        for byte in stream {
            got += try splitter.append(buffer([byte]))
            #expect(splitter.pendingBytes <= 300 + 5)
        }
        #expect(got == messages)
    }

    @Test func aPartialMessageStaysPending() throws {
        var splitter = GRPCMessageSplitter(maxMessageBytes: 1_000)
        let whole = frame([1, 2, 3, 4])
        #expect(try splitter.append(buffer(whole.dropLast())) == [])
        #expect(splitter.pendingBytes == whole.count - 1)
    }

    @Test func oversizedIsRefusedFromItsPrefix() throws {
        var splitter = GRPCMessageSplitter(maxMessageBytes: 10)
        // Only the prefix has arrived: refused before the bytes come.
        #expect(throws: GRPCMessageSplitter.Failure.tooLarge(length: 11, limit: 10)) {
            try splitter.append(buffer(frame(Array(repeating: 0, count: 11)).prefix(5)))
        }
        splitter = GRPCMessageSplitter(maxMessageBytes: 10)
        #expect(try splitter.append(buffer(frame(Array(repeating: 0, count: 10)))).count == 1)
    }

    @Test func compressedAndMalformedFlagsAreRefused() {
        var splitter = GRPCMessageSplitter(maxMessageBytes: 10)
        #expect(throws: GRPCMessageSplitter.Failure.compressed) { try splitter.append(buffer(frame([1], flag: 1))) }
        splitter = GRPCMessageSplitter(maxMessageBytes: 10)
        #expect(throws: GRPCMessageSplitter.Failure.malformedFlag(2)) { try splitter.append(buffer(frame([1], flag: 2))) }
        // A bad message after a good one in the same piece.
        splitter = GRPCMessageSplitter(maxMessageBytes: 10)
        #expect(throws: GRPCMessageSplitter.Failure.malformedFlag(0x80)) {
            try splitter.append(buffer(frame([5]) + frame([1], flag: 0x80)))
        }
    }

    /// Random bytes in random pieces: the splitter yields messages or refuses,
    /// never crashes, and never holds more than one message's worth.
    @Test func randomInputNeverCrashes() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2_000 {
            var splitter = GRPCMessageSplitter(maxMessageBytes: 64)
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let piece = (0..<Int.random(in: 0...40, using: &rng)).map { _ in
                    UInt8.random(in: 0...(Bool.random(using: &rng) ? 3 : 255), using: &rng)
                }
                guard (try? splitter.append(buffer(piece))) != nil else { break }
                #expect(splitter.pendingBytes <= 64 + 5)
            }
        }
    }

    /// Valid streams cut at random: what comes out is exactly what went in.
    @Test func randomValidStreamsRoundTrip() throws {
        var rng = SplitMix64(seed: 11)
        for _ in 0..<300 {
            let sent = (0..<Int.random(in: 0...10, using: &rng)).map { _ in
                (0..<Int.random(in: 0...100, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            var stream = sent.flatMap { frame($0) }[...]
            var splitter = GRPCMessageSplitter(maxMessageBytes: 100)
            var got: [[UInt8]] = []
            while !stream.isEmpty {
                let n = Int.random(in: 1...max(1, stream.count), using: &rng)
                got += try splitter.append(buffer(stream.prefix(n)))
                stream = stream.dropFirst(n)
            }
            #expect(got == sent)
            #expect(splitter.pendingBytes == 0)
        }
    }
}
