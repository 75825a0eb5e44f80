import NIOCore
import NIOHPACK
import NIOPosix
import Raft
import Testing

@testable import LeanHTTP2

/// A client of a server-side ``HTTP2Connection``: it writes frames in, and keeps what
/// the connection says back.
struct TestPeer {
    var connection = HTTP2Connection(role: .server, configuration: .init(maxConcurrentStreams: 2, streamWindow: 1000, connectionWindow: 100_000))
    var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
    var events: [HTTP2Connection.Event] = []
    /// DATA promises the connection has completed so far.
    var completed = 0

    /// The preface and an empty SETTINGS, as every client starts.
    mutating func start(_ settings: [(UInt16, UInt32)] = []) -> [TestFrame] {
        send(bytes: HTTP2Wire.preface + TestFrame.settings(settings).encoded())
    }

    @discardableResult
    mutating func send(_ frames: TestFrame...) -> [TestFrame] {
        send(bytes: frames.flatMap { $0.encoded() })
    }

    @discardableResult
    mutating func send(bytes: [UInt8], at now: NIODeadline = .now()) -> [TestFrame] {
        var buffer = ByteBuffer(bytes: bytes)
        connection.receive(&buffer, into: &events, now: now)
        return output()
    }

    mutating func output() -> [TestFrame] {
        guard let (bytes, promises) = connection.takeOutput() else { return [] }
        completed += promises.count
        for promise in promises { promise.succeed() }
        return TestFrame.parse(Array(bytes.readableBytesView))
    }

    mutating func headerBlock(_ headers: HPACKHeaders) -> [UInt8] {
        var buffer = ByteBuffer()
        try? encoder.encode(headers: headers, to: &buffer)
        return Array(buffer.readableBytesView)
    }

    mutating func request(_ stream: UInt32, path: String = "/etcdserverpb.KV/Put", endStream: Bool = false) -> TestFrame {
        let block = headerBlock([":method": "POST", ":scheme": "http", ":path": path, "content-type": "application/grpc"])
        return TestFrame(type: 1, flags: 0x4 | (endStream ? 0x1 : 0), stream: stream, payload: block)
    }
}

@Suite struct HTTP2ServerTests {
    @Test func theServerSpeaksFirstWithItsSettingsAndWindow() {
        var peer = TestPeer()
        let frames = peer.output()
        #expect(frames == [TestFrame.settings([(3, 2), (4, 1000), (6, 16384)]), TestFrame.windowUpdate(0, 100_000 - 65_535)])
    }

    @Test func aBadPrefaceIsAProtocolError() {
        var peer = TestPeer()
        _ = peer.output()
        let out = peer.send(bytes: Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(out.last?.type == 7 && out.last?.errorCode == 1)
        #expect(peer.connection.failure == .protocolError)
    }

    @Test func aUnaryCallGoesBothWays() {
        var peer = TestPeer()
        _ = peer.output()
        #expect(peer.start().map(\.type) == [4])  // SETTINGS ACK
        peer.send(peer.request(1), TestFrame(type: 0, flags: 1, stream: 1, payload: [0, 0, 0, 0, 2, 9, 9]))
        guard peer.events.count == 2, case let .opened(1, headers, false) = peer.events[0],
            case let .data(1, data, true) = peer.events[1]
        else {
            Issue.record("events: \(peer.events)")
            return
        }
        #expect(headers.first(name: ":path") == "/etcdserverpb.KV/Put")
        #expect(Array(data.readableBytesView) == [0, 0, 0, 0, 2, 9, 9])
        // The answer: headers, one message, trailers; then the stream is gone.
        var block = ByteBuffer()
        block.writeInteger(HPACKLiterals.status200)
        peer.connection.sendHeaders(stream: 1, block: block)
        peer.connection.sendData(stream: 1, ByteBuffer(bytes: [0, 0, 0, 0, 1, 7]), promise: nil)
        var trailers = ByteBuffer()
        HPACKLiterals.append(name: "grpc-status", value: "0", to: &trailers)
        peer.connection.sendHeaders(stream: 1, block: trailers, endStream: true)
        let out = peer.output()
        #expect(out.map(\.type) == [1, 0, 1])
        #expect(out.map(\.flags) == [0x4, 0, 0x5])
        #expect(!peer.connection.isOpen(1))
        // The blocks decode (the first announces an empty dynamic table).
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        var first = ByteBuffer(bytes: out[0].payload)
        #expect((try? decoder.decodeHeaders(from: &first))?.first(name: ":status") == "200")
        var last = ByteBuffer(bytes: out[2].payload)
        #expect((try? decoder.decodeHeaders(from: &last))?.first(name: "grpc-status") == "0")
    }

    @Test func bytesSplitAnywhereMeanTheSame() {
        var reference = TestPeer()
        _ = reference.output()
        let request = reference.request(1)
        let bytes = HTTP2Wire.preface + TestFrame.settings([]).encoded() + request.encoded()
            + TestFrame(type: 6, stream: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8]).encoded()
            + TestFrame(type: 0, flags: 1, stream: 1, payload: Array(repeating: 5, count: 40)).encoded()
        for split in 1..<bytes.count {
            var peer = TestPeer()
            _ = peer.output()
            var out = peer.send(bytes: Array(bytes[..<split]))
            out += peer.send(bytes: Array(bytes[split...]))
            #expect(out.map(\.type) == [4, 6], "split at \(split)")
            #expect(peer.events.count == 2, "split at \(split)")
        }
    }

    @Test func dataWaitsForThePeersWindowAndTrailersWaitForTheData() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start([(4, 10)])  // INITIAL_WINDOW_SIZE 10
        peer.send(peer.request(1, endStream: true))
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        peer.connection.sendData(stream: 1, ByteBuffer(bytes: Array(repeating: 1, count: 25)), promise: loop.makePromise())
        peer.connection.sendHeaders(stream: 1, block: ByteBuffer(bytes: [0x88]), endStream: true)
        var out = peer.output()
        #expect(out.map(\.type) == [0] && out[0].payload.count == 10)
        out = peer.send(TestFrame.windowUpdate(1, 10))
        #expect(out.map(\.type) == [0] && out[0].payload.count == 10)
        #expect(peer.connection.isOpen(1) && peer.completed == 0)
        // A larger INITIAL_WINDOW_SIZE credits open streams too (§6.9.2).
        out = peer.send(TestFrame.settings([(4, 100)]))
        #expect(out.map(\.type) == [4, 0, 1], "\(out)")
        #expect(out[1].payload.count == 5 && out[2].flags & 0x1 == 0x1)
        #expect(!peer.connection.isOpen(1) && peer.completed == 1)
    }

    @Test func theConnectionWindowIsSharedByAllStreams() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start([(4, 100_000)])
        peer.send(peer.request(1, endStream: true), peer.request(3, endStream: true))
        peer.connection.sendData(stream: 1, ByteBuffer(bytes: Array(repeating: 1, count: 60_000)), promise: nil)
        peer.connection.sendData(stream: 3, ByteBuffer(bytes: Array(repeating: 3, count: 10_000)), promise: nil)
        var out = peer.output()
        // 65,535 bytes in frames of at most 16,384.
        #expect(out.allSatisfy { $0.type == 0 && $0.payload.count <= 16_384 })
        #expect(out.reduce(0) { $0 + $1.payload.count } == 65_535)
        out = peer.send(TestFrame.windowUpdate(0, 10_000))
        #expect(out.reduce(0) { $0 + $1.payload.count } == 4_465 && out.allSatisfy { $0.stream == 3 })
    }

    @Test func pingsAreAnsweredAndAcksAreNot() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        #expect(peer.send(TestFrame(type: 6, stream: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8]))
            == [TestFrame(type: 6, flags: 1, stream: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8])])
        #expect(peer.send(TestFrame(type: 6, flags: 1, stream: 0, payload: [1, 2, 3, 4, 5, 6, 7, 8])) == [])
        let bad = peer.send(TestFrame(type: 6, stream: 0, payload: [1]))
        #expect(bad.last?.type == 7 && bad.last?.errorCode == 6)
    }

    @Test func headerBlocksMaySpanContinuationFramesButNothingMayInterleave() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        let block = peer.request(1).payload
        peer.send(TestFrame(type: 1, stream: 1, payload: Array(block[..<5])),
                  TestFrame(type: 9, stream: 1, payload: Array(block[5..<9])),
                  TestFrame(type: 9, flags: 0x4, stream: 1, payload: Array(block[9...])))
        guard case let .opened(1, headers, false)? = peer.events.first else {
            Issue.record("events: \(peer.events)")
            return
        }
        #expect(headers.first(name: ":path") == "/etcdserverpb.KV/Put")
        let block3 = peer.request(3).payload
        let out = peer.send(TestFrame(type: 1, stream: 3, payload: Array(block3[..<3])), TestFrame(type: 6, stream: 0, payload: Array(repeating: 0, count: 8)))
        #expect(out.last?.type == 7 && out.last?.errorCode == 1)
    }

    @Test func theReceiveWindowsAreEnforcedAndCreditedBack() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        peer.send(peer.request(1))
        // Half the stream window (1,000) used: credited back to full.
        var out = peer.send(TestFrame(type: 0, stream: 1, payload: Array(repeating: 0, count: 600)))
        #expect(out == [TestFrame.windowUpdate(1, 600)])
        // Beyond the stream window: that stream is reset, the connection lives.
        out = peer.send(TestFrame(type: 0, stream: 1, payload: Array(repeating: 0, count: 1001)))
        #expect(out.map(\.type) == [3] && out.last?.errorCode == 3)
        guard case .reset(1, _)? = peer.events.last else {
            Issue.record("events: \(peer.events)")
            return
        }
        #expect(peer.connection.failure == nil)
        // The connection window (100,000) is credited back once half used,
        // DATA for a reset stream included.
        out = []
        for _ in 0..<4 { out += peer.send(TestFrame(type: 0, stream: 1, payload: Array(repeating: 0, count: 16_000))) }
        #expect(out == [TestFrame.windowUpdate(0, 1001 + 600 + 4 * 16_000)])
    }

    @Test func streamsBeyondTheLimitAreRefused() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        let out = peer.send(peer.request(1), peer.request(3), peer.request(5))
        #expect(out == [TestFrame(type: 3, stream: 5, payload: [0, 0, 0, 7])])
        #expect(peer.events.count == 2)
    }

    /// HEADERS opening a stream id below one already used (a closed stream)
    /// gets that stream reset, not silence: the client's call ends instead of
    /// waiting for its deadline, and its other calls go on.
    @Test func headersOnAClosedStreamIdResetThatStream() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        peer.send(peer.request(5, endStream: true))
        let out = peer.send(peer.request(3, endStream: true))
        #expect(out == [TestFrame(type: 3, stream: 3, payload: [0, 0, 0, 5])])
        #expect(peer.connection.failure == nil && peer.connection.isOpen(5))
    }

    @Test func aResetFromThePeerEndsTheStreamAndItsQueuedData() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start([(4, 0)])
        peer.send(peer.request(1))
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        peer.connection.sendData(stream: 1, ByteBuffer(bytes: [1, 2, 3]), promise: loop.makePromise())
        #expect(peer.output() == [] && peer.completed == 0)
        peer.send(TestFrame(type: 3, stream: 1, payload: [0, 0, 0, 8]))
        guard case .reset(1, _)? = peer.events.last else {
            Issue.record("events: \(peer.events)")
            return
        }
        #expect(!peer.connection.isOpen(1) && peer.completed == 1)
    }

    @Test func trailersBeforeTheClientIsDoneTellItToStop() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        peer.send(peer.request(1))
        peer.connection.sendHeaders(stream: 1, block: ByteBuffer(bytes: [0x88]), endStream: true)
        let out = peer.output()
        #expect(out.map(\.type) == [1, 3] && out[1].errorCode == 0)
        // Whatever it sent meanwhile is ignored.
        #expect(peer.send(TestFrame(type: 0, flags: 1, stream: 1, payload: [0])) == [])
        #expect(peer.connection.failure == nil)
    }

    @Test func protocolViolationsEndTheConnection() {
        let violations: [(String, TestFrame, UInt32)] = [
            ("even stream", TestFrame(type: 1, flags: 0x4, stream: 2, payload: [0x82]), 1),
            ("DATA on an idle stream", TestFrame(type: 0, stream: 7, payload: [1]), 1),
            ("frame too large", TestFrame(type: 0, stream: 1, payload: Array(repeating: 0, count: 16_385)), 6),
            ("PUSH_PROMISE", TestFrame(type: 5, stream: 1, payload: [0, 0, 0, 2]), 1),
            ("bad HPACK", TestFrame(type: 1, flags: 0x4, stream: 1, payload: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), 9),
            ("SETTINGS of 5 bytes", TestFrame(type: 4, stream: 0, payload: [0, 4, 0, 0, 0]), 6),
            ("window too large", TestFrame.settings([(4, 0x8000_0000)]), 3),
            ("WINDOW_UPDATE of 0", TestFrame.windowUpdate(0, 0), 1),
            ("padding too long", TestFrame(type: 1, flags: 0xC, stream: 1, payload: [9, 0x82]), 1),
        ]
        for (name, frame, code) in violations {
            var peer = TestPeer()
            _ = peer.output()
            _ = peer.start()
            let out = peer.send(frame)
            #expect(out.last?.type == 7 && out.last?.errorCode == code, "\(name): \(out)")
            #expect(peer.send(peer.request(9)) == [], "\(name): input after GOAWAY is ignored")
        }
    }

    @Test func aLongHeaderBlockIsSplitIntoContinuationFrames() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        peer.send(peer.request(1, endStream: true))
        var block = ByteBuffer()
        HPACKLiterals.append(name: "grpc-status", value: "13", to: &block)
        HPACKLiterals.append(name: "grpc-message", value: String(repeating: "x", count: 40_000), to: &block)
        peer.connection.sendHeaders(stream: 1, block: block, endStream: true)
        let out = peer.output()
        #expect(out.map(\.type) == [1, 9, 9])
        #expect(out.map(\.flags) == [0x1, 0, 0x4])
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator(), maxDynamicTableSize: 4096, maxHeaderListSize: 1 << 20)
        var joined = ByteBuffer(bytes: out.flatMap(\.payload))
        #expect((try? decoder.decodeHeaders(from: &joined))?.first(name: "grpc-message")?.count == 40_000)
    }

    @Test func goingAwayServesOpenStreamsAndRefusesNewOnes() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        peer.send(peer.request(1, endStream: true))
        peer.connection.goAway()
        #expect(peer.output() == [TestFrame(type: 7, stream: 0, payload: [0, 0, 0, 1, 0, 0, 0, 0])])
        #expect(peer.send(peer.request(3, endStream: true)) == [TestFrame(type: 3, stream: 3, payload: [0, 0, 0, 7])])
        #expect(peer.events.count == 1 && peer.connection.hasStreams)
        peer.connection.sendHeaders(stream: 1, block: ByteBuffer(bytes: [0x88]), endStream: true)
        #expect(peer.output().map(\.type) == [1])
        #expect(!peer.connection.hasStreams)
        // A connection error after that names no more than the first GOAWAY
        // did (§6.8), though stream 3 was refused since.
        peer.connection.fail(.protocolError, "test")
        #expect(peer.output().first?.payload.prefix(8) == [0, 0, 0, 1, 0, 0, 0, 1])
    }

    @Test func theFirstFrameMustBeSettings() {
        var peer = TestPeer()
        _ = peer.output()
        let out = peer.send(bytes: HTTP2Wire.preface + TestFrame(type: 6, stream: 0, payload: Array(repeating: 0, count: 8)).encoded())
        #expect(out.last?.type == 7 && out.last?.errorCode == 1)
    }

    @Test func closingHandsBackEveryPromiseStillHeld() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start([(4, 0)])
        peer.send(peer.request(1), peer.request(3))
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        peer.connection.sendData(stream: 1, ByteBuffer(bytes: [1]), promise: loop.makePromise())
        peer.connection.sendData(stream: 1, ByteBuffer(bytes: [2]), promise: loop.makePromise())
        peer.connection.sendData(stream: 3, ByteBuffer(bytes: [3]), promise: loop.makePromise())
        let held = peer.connection.close()
        #expect(held.count == 3)
        for promise in held { promise.succeed() }
        #expect(!peer.connection.isOpen(1) && !peer.connection.isOpen(3))
    }

    @Test func aStreamWindowUpdateMovesOnlyThatStream() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start([(4, 0)])
        peer.send(peer.request(1), peer.request(3))
        peer.connection.sendData(stream: 1, ByteBuffer(bytes: [1, 1]), promise: nil)
        peer.connection.sendData(stream: 3, ByteBuffer(bytes: [3, 3]), promise: nil)
        #expect(peer.output() == [])
        #expect(peer.send(TestFrame.windowUpdate(3, 2)) == [TestFrame(type: 0, stream: 3, payload: [3, 3])])
        #expect(peer.send(TestFrame.windowUpdate(1, 1)) == [TestFrame(type: 0, stream: 1, payload: [1])])
        // Stream 1 waits for its own window, not the connection's.
        #expect(peer.connection.blocked.isEmpty)
        #expect(peer.send(TestFrame.windowUpdate(1, 5)) == [TestFrame(type: 0, stream: 1, payload: [1])])
    }

    /// Review finding: streams a client holds at a zero window were walked
    /// (popped, framed, put back) on every connection WINDOW_UPDATE and
    /// SETTINGS, and each pass counted as "sent", resetting the control-frame
    /// flood count. Now they wait off the list, and a SETTINGS that opens
    /// their windows lets them all send.
    @Test func zeroWindowStreamsCostAConnectionWindowUpdateNothing() {
        let many = HTTP2Connection.Configuration(maxConcurrentStreams: 1000, streamWindow: 1000, connectionWindow: 100_000)
        var peer = TestPeer(connection: HTTP2Connection(role: .server, configuration: many))
        _ = peer.output()
        _ = peer.start([(4, 0)])
        for id in stride(from: UInt32(1), through: 199, by: 2) {
            peer.send(peer.request(id))
            peer.connection.sendData(stream: id, ByteBuffer(bytes: [9]), promise: nil)
        }
        #expect(peer.connection.blocked.isEmpty)
        #expect(peer.send(TestFrame.windowUpdate(0, 1)) == [])
        // SETTINGS and PINGs while nothing can be sent still count as a flood.
        let ping = TestFrame(type: 6, stream: 0, payload: Array(repeating: 0, count: 8)).encoded()
        let settings = TestFrame.settings([]).encoded()
        _ = peer.send(bytes: Array((0..<HTTP2Connection.maxControlFrames / 2 + 1).map { _ in ping + settings }.joined()))
        #expect(peer.connection.failure == .enhanceYourCalm)

        peer = TestPeer(connection: HTTP2Connection(role: .server, configuration: many))
        _ = peer.output()
        _ = peer.start([(4, 0)])
        for id in stride(from: UInt32(1), through: 199, by: 2) {
            peer.send(peer.request(id))
            peer.connection.sendData(stream: id, ByteBuffer(bytes: [9]), promise: nil)
        }
        #expect(peer.connection.streams.count == 100)
        #expect(peer.connection.streams.values.filter { !$0.queue.isEmpty }.count == 100)
        let out = peer.send(TestFrame.settings([(4, 10)]))
        #expect(out.filter { $0.type == 0 }.count == 100, "\(out.prefix(6))")
    }

    /// Streams the peer resets while the connection window is spent leave
    /// entries on the send list; it is compacted, not left to grow.
    @Test func streamsResetWhileTheConnectionWindowIsSpentLeaveNoTrail() {
        let many = HTTP2Connection.Configuration(maxConcurrentStreams: 1000, streamWindow: 1000, connectionWindow: 100_000)
        var peer = TestPeer(connection: HTTP2Connection(role: .server, configuration: many))
        _ = peer.output()
        _ = peer.start([(4, 1_000_000)])
        peer.send(peer.request(1))
        peer.connection.sendData(stream: 1, ByteBuffer(bytes: Array(repeating: 0, count: 70_000)), promise: nil)
        _ = peer.output()
        #expect(peer.connection.blocked == [1], "the connection window is spent, stream 1's is not")
        for i in 1...900 {
            let id = UInt32(2 * i + 1)
            peer.send(peer.request(id))
            peer.connection.sendData(stream: id, ByteBuffer(bytes: [1]), promise: nil)
            peer.send(TestFrame(type: 3, stream: id, payload: [0, 0, 0, 8]))
        }
        #expect(peer.connection.failure == nil)
        #expect(peer.connection.blocked.count <= 2 * peer.connection.streams.count + 65)
        // Opening the window still serves stream 1.
        #expect(peer.send(TestFrame.windowUpdate(0, 10_000)).contains { $0.type == 0 && $0.stream == 1 })
    }

    @Test func priorityOnStreamZeroIsAProtocolError() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        let out = peer.send(TestFrame(type: 2, stream: 0, payload: [0, 0, 0, 1, 16]))
        #expect(out.last?.type == 7 && out.last?.errorCode == 1)
    }

    /// Padding counts against the stream's window too (§6.9.1), and is
    /// credited back: a client sending padded, empty DATA must see the
    /// stream's WINDOW_UPDATE, or its view of the window drifts until the
    /// stream stalls.
    @Test func paddingAloneCountsAgainstTheStreamWindow() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        peer.send(peer.request(1))
        let padded = TestFrame(type: 0, flags: 0x8, stream: 1, payload: [255] + Array(repeating: 0, count: 255)).encoded()
        let out = peer.send(bytes: Array((0..<2_100).map { _ in padded }.joined()))
        #expect(out.contains { $0.type == 8 && $0.stream == 1 }, "\(out)")
        #expect(peer.connection.failure == nil)
    }

    @Test func manyInitialWindowSettingsInOneFrameApplyOnce() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start([(4, 0)])
        peer.send(peer.request(1))
        peer.connection.sendData(stream: 1, ByteBuffer(bytes: Array(repeating: 1, count: 10)), promise: nil)
        let settings = TestFrame.settings((0..<2_000).map { (4, UInt32($0 % 7)) } + [(4, 4)])
        let out = peer.send(settings)
        #expect(out.map(\.type) == [4, 0] && out.last?.payload.count == 4)
    }

    @Test func floodsEndTheConnection() {
        // Rapid reset: open and reset streams, more than 1,000 within 10 s.
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        let start = NIODeadline.now()
        var out: [TestFrame] = []
        for i in 0...HTTP2Connection.Configuration().maxResets {
            let id = UInt32(2 * i + 1)
            out = peer.send(peer.request(id, endStream: true), TestFrame(type: 3, stream: id, payload: [0, 0, 0, 8]))
        }
        #expect(out.last?.type == 7 && out.last?.errorCode == 0xB, "\(out)")
        // Cancels at 50 a second, for a minute (a busy proxy), are fine.
        peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        for i in 0..<3_000 {
            let id = UInt32(2 * i + 1)
            let at = start + .milliseconds(Int64(i) * 20)
            out = peer.send(bytes: (peer.request(id, endStream: true).encoded() + TestFrame(type: 3, stream: id, payload: [0, 0, 0, 8]).encoded()), at: at)
        }
        #expect(peer.connection.failure == nil)
        // PINGs with nothing else in between.
        peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        let ping = TestFrame(type: 6, stream: 0, payload: Array(repeating: 0, count: 8)).encoded()
        out = peer.send(bytes: Array((0..<HTTP2Connection.maxControlFrames).map { _ in ping }.joined()))
        #expect(peer.connection.failure == .enhanceYourCalm)
        // The same number over months of a quiet connection (keepalive) is fine.
        peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        for i in 0..<(2 * HTTP2Connection.maxControlFrames) {
            peer.send(bytes: ping, at: start + .milliseconds(Int64(i) * 2))
        }
        #expect(peer.connection.failure == nil)
        // Empty DATA frames.
        peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        peer.send(peer.request(1))
        let empty = TestFrame(type: 0, stream: 1).encoded()
        out = peer.send(bytes: Array((0...HTTP2Connection.maxEmptyDataFrames).map { _ in empty }.joined()))
        #expect(out.last?.type == 7 && out.last?.errorCode == 0xB)
        // A header block that never ends.
        peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        out = peer.send(bytes: TestFrame(type: 1, stream: 1, payload: [0x82]).encoded()
            + Array((0..<HTTP2Connection.maxHeaderFrames).map { _ in TestFrame(type: 9, stream: 1, payload: [0x82]).encoded() }.joined()))
        #expect(out.last?.type == 7 && out.last?.errorCode == 0xB)
    }

    /// Random frames and random bytes after a valid start: never a crash, and
    /// once the connection failed, nothing more comes out.
    @Test(arguments: 1...40)
    func randomInputNeverCrashes(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        for _ in 0..<200 {
            var bytes: [UInt8]
            if Int.random(in: 0..<4, using: &rng) == 0 {
                bytes = (0..<Int.random(in: 1...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                let length = Int.random(in: 0...24, using: &rng)
                bytes = TestFrame(type: UInt8.random(in: 0...10, using: &rng), flags: UInt8.random(in: 0...255, using: &rng),
                                  stream: UInt32.random(in: 0...9, using: &rng),
                                  payload: (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }).encoded()
            }
            let failedBefore = peer.connection.failure != nil
            let out = peer.send(bytes: bytes)
            if failedBefore { #expect(out.isEmpty) }
            if Bool.random(using: &rng), let stream = peer.events.compactMap({ if case let .opened(s, _, _) = $0 { s } else { nil } }).last {
                peer.connection.sendData(stream: stream, ByteBuffer(bytes: [0, 0, 0, 0, 0]), promise: nil)
                peer.connection.sendHeaders(stream: stream, block: ByteBuffer(bytes: [0x88]), endStream: true)
            }
        }
    }
}

/// RFC 9113 §8.1.1: a malformed request, or one over the advertised header
/// list size, fails its own stream (RST_STREAM PROTOCOL_ERROR); the
/// connection and its other streams go on.
@Suite struct MalformedRequestTests {
    static func literalBlock(_ fields: [(String, String)]) -> [UInt8] {
        var block = ByteBuffer()
        for (name, value) in fields { HPACKLiterals.append(name: name, value: value, to: &block) }
        return Array(block.readableBytesView)
    }

    static let valid: [(String, String)] = [
        (":method", "POST"), (":scheme", "http"), (":path", "/etcdserverpb.KV/Put"), ("content-type", "application/grpc"),
    ]

    static let malformed: [[(String, String)]] = [
        [(":method", "POST"), (":scheme", "http"), ("content-type", "application/grpc")],  // no :path
        [(":method", "POST"), (":path", "/p")],  // no :scheme
        [(":method", "POST"), (":scheme", "http"), (":path", "")],  // empty :path
        [(":method", "POST"), (":method", "POST"), (":scheme", "http"), (":path", "/p")],  // twice
        [(":method", "POST"), (":scheme", "http"), ("te", "trailers"), (":path", "/p")],  // pseudo after regular
        [(":method", "POST"), (":scheme", "http"), (":path", "/p"), (":status", "200")],  // a response's pseudo-header
        [(":method", "POST"), (":scheme", "http"), (":path", "/p"), ("Content-Type", "application/grpc")],  // uppercase
        [(":method", "POST"), (":scheme", "http"), (":path", "/p"), ("connection", "keep-alive")],
        [(":method", "POST"), (":scheme", "http"), (":path", "/p"), ("te", "gzip")],
    ]

    @Test(arguments: 0..<malformed.count)
    func aMalformedRequestResetsItsStreamOnly(_ index: Int) {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        let bad = TestFrame(type: 1, flags: 0x4, stream: 1, payload: Self.literalBlock(Self.malformed[index]))
        let out = peer.send(bad, TestFrame(type: 1, flags: 0x4, stream: 3, payload: Self.literalBlock(Self.valid)))
        #expect(out == [TestFrame(type: 3, stream: 1, payload: [0, 0, 0, 1])], "\(Self.malformed[index])")
        #expect(peer.connection.failure == nil)
        #expect(peer.events.count == 1, "the valid request on stream 3 opened")
    }

    @Test func trailersWithAPseudoHeaderResetTheStream() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        _ = peer.send(TestFrame(type: 1, flags: 0x4, stream: 1, payload: Self.literalBlock(Self.valid)))
        let out = peer.send(TestFrame(type: 1, flags: 0x5, stream: 1, payload: Self.literalBlock([(":path", "/p")])))
        #expect(out == [TestFrame(type: 3, stream: 1, payload: [0, 0, 0, 1])])
        #expect(peer.connection.failure == nil)
    }

    @Test func aHeaderListOverTheAdvertisedSizeFailsOnlyItsStream() {
        var peer = TestPeer()
        _ = peer.output()
        _ = peer.start()
        let big = Self.valid + [("x-big", String(repeating: "a", count: 10_000)), ("x-big2", String(repeating: "b", count: 10_000))]
        // 20 KB of literals: HEADERS and one CONTINUATION.
        let block = Self.literalBlock(big)
        let frames = [TestFrame(type: 1, flags: 0, stream: 1, payload: Array(block[..<16_000])),
                  TestFrame(type: 9, flags: 0x4, stream: 1, payload: Array(block[16_000...]))]
        var out = peer.send(bytes: frames.flatMap { $0.encoded() })
        #expect(out == [TestFrame(type: 3, stream: 1, payload: [0, 0, 0, 1])])
        #expect(peer.connection.failure == nil)
        out = peer.send(TestFrame(type: 1, flags: 0x4, stream: 3, payload: Self.literalBlock(Self.valid)))
        #expect(out.isEmpty && peer.events.count == 1, "the next request opens")
    }
}
