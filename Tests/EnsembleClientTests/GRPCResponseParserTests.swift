@testable import EnsembleClient
import NIOCore
import NIOHPACK
import LeanHTTP2
import Testing

/// The response side of a call, event by event.
@Suite struct GRPCResponseParserTests {
    let ok: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]

    func data(_ messages: [UInt8]...) -> ByteBuffer {
        var buffer = ByteBuffer()
        for message in messages {
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(UInt32(message.count))
            buffer.writeBytes(message)
        }
        return buffer
    }

    func failure(_ step: GRPCResponseParser.Step) -> GRPCCallError? {
        if case let .failed(error)? = step.ending { return error }
        return nil
    }

    @Test func headersMessagesTrailers() {
        var parser = GRPCResponseParser(maxMessageBytes: 100)
        #expect(parser.receivedHeaders(ok, endStream: false) == .init())
        #expect(parser.receivedData(data([1], [2, 3]), endStream: false).messages == [[1], [2, 3]])
        let end = parser.receivedHeaders(["grpc-status": "0"], endStream: true)
        #expect(end.ending == .ok)
        #expect(parser.hasEnded)
    }

    @Test func trailersOnlyCarriesTheStatusAndDecodedMessage() {
        var parser = GRPCResponseParser(maxMessageBytes: 100)
        var headers = ok
        headers.add(name: "grpc-status", value: "5")
        headers.add(name: "grpc-message", value: "etcdserver: requested lease not found%0A100%25 %C3%BC")
        let step = parser.receivedHeaders(headers, endStream: true)
        #expect(failure(step) == GRPCCallError(code: 5, message: "etcdserver: requested lease not found\n100% ü"))
    }

    @Test func httpStatusOtherThan200MapsToGRPCCodes() {
        for (http, code) in [(400, 13), (401, 16), (403, 7), (404, 12), (429, 14), (502, 14), (503, 14), (504, 14), (500, 2)] {
            var parser = GRPCResponseParser(maxMessageBytes: 100)
            let step = parser.receivedHeaders([":status": String(http)], endStream: true)
            #expect(failure(step)?.code == code, "HTTP \(http)")
        }
    }

    @Test func aNonGRPCContentTypeIsInternal() {
        var parser = GRPCResponseParser(maxMessageBytes: 100)
        let step = parser.receivedHeaders([":status": "200", "content-type": "text/html"], endStream: false)
        #expect(failure(step)?.code == 13)
        #expect(failure(step)?.message.contains("text/html") == true)
    }

    @Test func trailersWithoutStatusOrWithAMalformedOne() {
        var parser = GRPCResponseParser(maxMessageBytes: 100)
        _ = parser.receivedHeaders(ok, endStream: false)
        #expect(failure(parser.receivedHeaders([:], endStream: true))?.code == 13)
        parser = GRPCResponseParser(maxMessageBytes: 100)
        _ = parser.receivedHeaders(ok, endStream: false)
        #expect(failure(parser.receivedHeaders(["grpc-status": "x"], endStream: true))?.code == 2)
    }

    @Test func protocolViolationsEndTheCall() {
        var parser = GRPCResponseParser(maxMessageBytes: 100)
        #expect(failure(parser.receivedData(data([1]), endStream: false))?.code == 13, "DATA before headers")

        parser = GRPCResponseParser(maxMessageBytes: 100)
        _ = parser.receivedHeaders(ok, endStream: false)
        let step = parser.receivedData(data([1]), endStream: true)
        #expect(step.messages == [[1]])
        #expect(failure(step)?.message == "server closed the stream without sending trailers")

        parser = GRPCResponseParser(maxMessageBytes: 100)
        _ = parser.receivedHeaders(ok, endStream: false)
        _ = parser.receivedData(ByteBuffer(bytes: [0, 0, 0, 0, 9, 1]), endStream: false)
        #expect(failure(parser.receivedHeaders(["grpc-status": "0"], endStream: true))?.message.contains("inside a message") == true)

        parser = GRPCResponseParser(maxMessageBytes: 100)
        _ = parser.receivedHeaders(ok, endStream: false)
        #expect(failure(parser.receivedHeaders(["x": "y"], endStream: false))?.code == 13, "headers twice")

        parser = GRPCResponseParser(maxMessageBytes: 2)
        _ = parser.receivedHeaders(ok, endStream: false)
        #expect(failure(parser.receivedData(data([1, 2, 3]), endStream: false))?.code == 8, "too large")
    }

    @Test func resetsMapLikeGrpcGo() {
        for (reset, code) in [(HTTP2Wire.ErrorCode.cancel, 1), (.refusedStream, 14), (.enhanceYourCalm, 8), (.protocolError, 13)] {
            var parser = GRPCResponseParser(maxMessageBytes: 100)
            #expect(failure(parser.receivedReset(reset))?.code == code)
        }
    }

    @Test func everythingAfterTheEndIsIgnored() {
        var parser = GRPCResponseParser(maxMessageBytes: 100)
        #expect(failure(parser.failed(.deadlineExceeded)) == .deadlineExceeded)
        #expect(parser.receivedHeaders(ok, endStream: false) == .init())
        #expect(parser.receivedData(data([1]), endStream: true) == .init())
        #expect(parser.receivedReset(.cancel) == .init())
        #expect(parser.failed(.cancelled) == .init())
    }
}

@Suite struct GRPCHeaderTests {
    @Test func grpcTimeoutUsesTheFinestUnitThatFitsInEightDigits() {
        #expect(grpcTimeoutHeader(.nanoseconds(1)) == "1n")
        #expect(grpcTimeoutHeader(.milliseconds(50)) == "50000000n")
        #expect(grpcTimeoutHeader(.milliseconds(100)) == "100000u")
        #expect(grpcTimeoutHeader(.seconds(5)) == "5000000u")
        #expect(grpcTimeoutHeader(.seconds(100)) == "100000m")
        #expect(grpcTimeoutHeader(.seconds(200_000)) == "200000S")
        #expect(grpcTimeoutHeader(.seconds(3600 * 24 * 365 * 10)) == "5256000M")
        // Saturated at Int64.max nanoseconds (292 years).
        #expect(grpcTimeoutHeader(.seconds(Int64.max)) == "2562048H")
        #expect(grpcTimeoutHeader(.zero) == "0n")
        #expect(grpcTimeoutHeader(.seconds(-1)) == "0n")
        // Rounded up, never down: the server must not give up first.
        #expect(grpcTimeoutHeader(.nanoseconds(100_000_001)) == "100001u")
    }

    @Test func grpcMessageIsPercentDecoded() {
        #expect(GRPCCallError.percentDecode("plain") == "plain")
        #expect(GRPCCallError.percentDecode("100%25 done%0A") == "100% done\n")
        #expect(GRPCCallError.percentDecode("%E2%9C%93") == "✓")
        // Not a valid escape: kept as sent.
        #expect(GRPCCallError.percentDecode("50%") == "50%")
        #expect(GRPCCallError.percentDecode("%zz%4") == "%zz%4")
    }

    @Test func errorsPrintLikeGrpcGo() {
        #expect("\(GRPCCallError(code: 14, message: "down"))" == "rpc error: code = Unavailable desc = down")
        #expect(GRPCCallError.name(of: 99) == "Code(99)")
    }
}
