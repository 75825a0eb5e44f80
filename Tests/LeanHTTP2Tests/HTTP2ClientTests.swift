import NIOCore
import NIOHPACK
import Raft
import Testing

@testable import LeanHTTP2

/// A server talking to a client-side ``HTTP2Connection``: it writes frames
/// in, and keeps what the connection says back.
struct TestServer {
    var connection = HTTP2Connection(role: .client, configuration: .init(streamWindow: 1000, connectionWindow: 100_000))
    var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
    var events: [HTTP2Connection.Event] = []

    /// The server's SETTINGS, as every server starts.
    mutating func start(_ settings: [(UInt16, UInt32)] = []) -> [TestFrame] {
        send(TestFrame.settings(settings))
    }

    @discardableResult
    mutating func send(_ frames: TestFrame...) -> [TestFrame] { send(frames) }

    /// Feeds `frames` to the connection; returns what it wrote in answer.
    @discardableResult
    mutating func send(_ frames: [TestFrame]) -> [TestFrame] {
        var buffer = ByteBuffer(bytes: frames.flatMap { $0.encoded() })
        connection.receive(&buffer, into: &events)
        return output()
    }

    mutating func output() -> [TestFrame] {
        guard let (bytes, promises) = connection.takeOutput() else { return [] }
        for promise in promises { promise.succeed() }
        return TestFrame.parse(Array(bytes.readableBytesView))
    }

    mutating func block(_ headers: HPACKHeaders) -> [UInt8] {
        var buffer = ByteBuffer()
        try? encoder.encode(headers: headers, to: &buffer)
        return Array(buffer.readableBytesView)
    }

    /// A whole answer: headers, one message, `grpc-status: 0`.
    mutating func answer(_ stream: UInt32) -> [TestFrame] {
        [TestFrame(type: 1, flags: 0x4, stream: stream, payload: block([":status": "200", "content-type": "application/grpc"])),
         TestFrame(type: 0, stream: stream, payload: [0, 0, 0, 0, 1, 7]),
         TestFrame(type: 1, flags: 0x5, stream: stream, payload: block(["grpc-status": "0"]))]
    }

    /// Opens a stream with request headers, and nothing more yet.
    mutating func open(_ id: UInt32) {
        var head = ByteBuffer()
        head.writeInteger(HPACKLiterals.methodPOST)
        HPACKLiterals.append(name: ":path", value: "/t.T/M", to: &head)
        connection.open(stream: id, block: head, endStream: false)
    }

    /// A whole unary request: headers, then the message with END_STREAM.
    mutating func request(_ id: UInt32, _ message: [UInt8] = [0, 0, 0, 0, 1, 1]) {
        open(id)
        connection.sendData(stream: id, ByteBuffer(bytes: message), endStream: true, promise: nil)
    }
}

@Suite struct HTTP2ClientTests {
    @Test func theClientStartsWithThePrefaceSettingsAndWindow() {
        var server = TestServer()
        var bytes = ByteBuffer()
        if let (out, _) = server.connection.takeOutput() { bytes = out }
        #expect(bytes.readBytes(length: 24) == HTTP2Wire.preface)
        #expect(TestFrame.parse(Array(bytes.readableBytesView))
            == [TestFrame.settings([(2, 0), (4, 1000), (6, 16384)]), TestFrame.windowUpdate(0, 100_000 - 65_535)])
    }

    @Test func aServerThatDoesNotStartWithSettingsIsAProtocolError() {
        var server = TestServer()
        _ = server.output()
        let out = server.send(TestFrame(type: 6, stream: 0, payload: Array(repeating: 0, count: 8)))
        #expect(out.last?.type == 7 && out.last?.errorCode == 1)
    }

    @Test func aUnaryCallGoesBothWaysAndItsStreamCloses() {
        var server = TestServer()
        _ = server.output()
        #expect(server.start().map(\.type) == [4])
        server.request(1)
        let out = server.output()
        #expect(out.map(\.type) == [1, 0] && out.map(\.flags) == [0x4, 0x1])
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        var head = ByteBuffer(bytes: out[0].payload)
        let headers = try? decoder.decodeHeaders(from: &head)
        #expect(headers?.first(name: ":method") == "POST" && headers?.first(name: ":path") == "/t.T/M")
        #expect(server.send(server.answer(1)) == [])
        #expect(server.events.count == 3)
        guard case .headers(1, _, true)? = server.events.last else {
            Issue.record("events: \(server.events)")
            return
        }
        #expect(!server.connection.isOpen(1))
    }

    @Test func streamsBeyondTheServersLimitWaitInOrderWithTheirData() {
        var server = TestServer()
        _ = server.output()
        _ = server.start([(3, 2)])
        server.request(1)
        server.request(3)
        server.request(5)
        server.request(7)
        #expect(server.output().map(\.stream) == [1, 1, 3, 3])
        // Stream 7 gives up while it waits: nothing of it is ever written.
        server.connection.sendReset(stream: 7, .cancel)
        #expect(server.output() == [])
        // Stream 1 ends: 5 takes its slot, HEADERS before DATA.
        let out = server.send(server.answer(1))
        #expect(out.map(\.stream) == [5, 5] && out.map(\.type) == [1, 0])
        #expect(server.send(server.answer(3)) == [])
        #expect(server.connection.openedStreams == 1)
    }

    @Test func framesForAStreamTheServerCannotKnowAreAProtocolError() {
        var server = TestServer()
        _ = server.output()
        _ = server.start([(3, 1)])
        server.request(1)
        server.request(3)  // waits: the server has not seen it
        _ = server.output()
        let out = server.send(TestFrame(type: 0, stream: 3, payload: [1]))
        #expect(out.last?.type == 7 && out.last?.errorCode == 1)
    }

    @Test func goAwayDropsTheStreamsItDidNotServeAndOpensNothingMore() {
        var server = TestServer()
        _ = server.output()
        _ = server.start()
        server.request(1)
        server.request(3)
        _ = server.output()
        server.send(TestFrame(type: 7, stream: 0, payload: [0, 0, 0, 1, 0, 0, 0, 0]))
        guard case .goAway(1, .noError)? = server.events.last else {
            Issue.record("events: \(server.events)")
            return
        }
        #expect(server.connection.isOpen(1) && !server.connection.isOpen(3))
        server.request(5)
        #expect(server.output() == [] && !server.connection.isOpen(5))
        #expect(server.send(server.answer(1)) == [])
        #expect(!server.connection.isOpen(1))
    }

    @Test func anAnswerBeforeTheRequestEndedLeavesTheStreamForTheClientToReset() {
        var server = TestServer()
        _ = server.output()
        _ = server.start()
        server.open(1)
        _ = server.output()
        server.send(server.answer(1))
        #expect(server.connection.isOpen(1))
        server.connection.sendReset(stream: 1, .cancel)
        #expect(server.output() == [TestFrame(type: 3, stream: 1, payload: [0, 0, 0, 8])])
        #expect(!server.connection.isOpen(1))
    }

    @Test func anEmptyEndOfStreamNeedsNoWindow() {
        var server = TestServer()
        _ = server.output()
        _ = server.start([(4, 0)])
        server.open(1)
        server.connection.sendData(stream: 1, ByteBuffer(), endStream: true, promise: nil)
        #expect(server.output().map(\.type) == [1, 0])
    }

    @Test func aStreamResetByTheServerIsAnEventAndFreesItsSlot() {
        var server = TestServer()
        _ = server.output()
        _ = server.start([(3, 1)])
        server.request(1)
        server.request(3)
        _ = server.output()
        let out = server.send(TestFrame(type: 3, stream: 1, payload: [0, 0, 0, 7]))
        guard case .reset(1, .refusedStream)? = server.events.last else {
            Issue.record("events: \(server.events)")
            return
        }
        #expect(out.map(\.stream) == [3, 3])
    }

    @Test func anEmptyEndOfStreamGoesOutEvenWithANegativeWindow() {
        var server = TestServer()
        _ = server.output()
        _ = server.start([(4, 10)])
        server.open(1)
        server.connection.sendData(stream: 1, ByteBuffer(bytes: Array(repeating: 1, count: 10)), promise: nil)
        _ = server.output()
        _ = server.send(TestFrame.settings([(4, 0)]))  // the stream's window is now -10
        server.connection.sendData(stream: 1, ByteBuffer(), endStream: true, promise: nil)
        #expect(server.output() == [TestFrame(type: 0, flags: 1, stream: 1)])
    }

    @Test func aServerMaySayItDoesNotPush() {
        var server = TestServer()
        _ = server.output()
        #expect(server.start([(2, 0)]).map(\.type) == [4])
        #expect(server.connection.failure == nil)
        #expect(server.send(TestFrame.settings([(2, 1)])).last?.errorCode == 1)
    }

    @Test func goAwayEndsStreamsStillWaitingAndOpensNoMore() {
        var server = TestServer()
        _ = server.output()
        _ = server.start([(3, 1)])
        server.request(1)
        server.request(3)
        _ = server.output()
        // A graceful GOAWAY: every stream opened may finish; none may open.
        #expect(server.send(TestFrame(type: 7, stream: 0, payload: [0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])) == [])
        guard case .goAway(1, .noError)? = server.events.last else {
            Issue.record("events: \(server.events)")
            return
        }
        #expect(!server.connection.isOpen(3))
        #expect(server.send(server.answer(1)) == [])
    }

    @Test func aServerThatNamesNoStreamLimitHasNone() {
        var server = TestServer()
        _ = server.output()
        _ = server.start([(4, 65_535)])
        for i in 0..<150 { server.request(UInt32(2 * i + 1)) }
        #expect(server.output().filter { $0.type == 1 }.count == 150)
    }

    @Test(arguments: 1...40)
    func randomInputNeverCrashes(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        var server = TestServer()
        _ = server.output()
        _ = server.start([(3, 3)])
        var next: UInt32 = 1
        for _ in 0..<200 {
            if Int.random(in: 0..<3, using: &rng) == 0 {
                server.request(next)
                next += 2
            }
            let length = Int.random(in: 0...24, using: &rng)
            let frame = TestFrame(type: UInt8.random(in: 0...10, using: &rng), flags: UInt8.random(in: 0...255, using: &rng),
                                  stream: UInt32.random(in: 0...next, using: &rng),
                                  payload: (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) })
            let failedBefore = server.connection.failure != nil
            let out = server.send(frame)
            if failedBefore { #expect(out.isEmpty) }
            if Bool.random(using: &rng) { server.connection.sendReset(stream: UInt32.random(in: 0...next, using: &rng), .cancel) }
            #expect(server.connection.openedStreams >= 0 && server.connection.openedStreams <= 3)
        }
    }
}
