import NIOCore
import NIOHPACK
import LeanHTTP2

/// The response side of one gRPC call as a pure state machine: HTTP/2 events
/// go in, response messages and at most one end of the call come out. The
/// connection handler (``GRPCClientHandler``) only moves frames.
///
/// A well-formed response is either
/// - headers (`:status 200`, `content-type: application/grpc…`), any number of
///   DATA frames carrying length-prefixed messages, then trailers with
///   `grpc-status` and END_STREAM; or
/// - trailers-only: one header block with `:status`, `grpc-status` and
///   END_STREAM (how servers answer a call that fails before any message).
///
/// Anything else ends the call with a status saying what went wrong. After the
/// end, every event is ignored.
struct GRPCResponseParser {
    enum Ending: Equatable {
        case ok
        case failed(GRPCCallError)
    }

    /// What one event produced: messages to deliver, then maybe the end.
    struct Step: Equatable {
        var messages: [[UInt8]] = []
        var ending: Ending?
    }

    private enum State {
        case awaitingHeaders
        case receivingMessages
        case ended
    }

    private var state = State.awaitingHeaders
    private var splitter: GRPCMessageSplitter

    init(maxMessageBytes: Int) {
        splitter = GRPCMessageSplitter(maxMessageBytes: maxMessageBytes)
    }

    var hasEnded: Bool {
        if case .ended = state { return true }
        return false
    }

    /// A header block: the response headers, the trailers, or both at once.
    mutating func receivedHeaders(_ headers: HPACKHeaders, endStream: Bool) -> Step {
        switch state {
        case .ended:
            return Step()
        case .awaitingHeaders:
            guard let value = headers.first(name: ":status"), let status = Int(value) else {
                return end(.internal("response headers without a valid :status"))
            }
            guard status == 200 else { return end(.httpStatus(status)) }
            guard let contentType = headers.first(name: "content-type"), contentType.hasPrefix("application/grpc")
            else {
                let shown = headers.first(name: "content-type") ?? "none"
                return end(.internal("unexpected content-type \"\(shown)\" in the response (not a gRPC server?)"))
            }
            guard endStream else {
                state = .receivingMessages
                return Step()
            }
            return end(Self.status(trailers: headers))
        case .receivingMessages:
            guard endStream else {
                return end(.internal("a second header block arrived that does not end the stream"))
            }
            guard splitter.pendingBytes == 0 else {
                return end(.internal("the stream ended inside a message (\(splitter.pendingBytes) bytes pending)"))
            }
            return end(Self.status(trailers: headers))
        }
    }

    /// A DATA frame's bytes.
    mutating func receivedData(_ bytes: ByteBuffer, endStream: Bool) -> Step {
        switch state {
        case .ended:
            return Step()
        case .awaitingHeaders:
            return end(.internal("DATA arrived before the response headers"))
        case .receivingMessages:
            var step = Step()
            do {
                step.messages = try splitter.append(bytes)
            } catch {
                return end(Self.status(error))
            }
            if endStream {
                step.ending = end(.internal("server closed the stream without sending trailers")).ending
            }
            return step
        }
    }

    /// The server reset the stream (RST_STREAM).
    mutating func receivedReset(_ code: HTTP2Wire.ErrorCode) -> Step {
        hasEnded ? Step() : end(.reset(code))
    }

    /// The call ends without the server's status: the stream or connection
    /// closed, the deadline passed, or the caller cancelled. `error` says which.
    mutating func failed(_ error: GRPCCallError) -> Step {
        hasEnded ? Step() : end(error)
    }

    private mutating func end(_ error: GRPCCallError) -> Step {
        end(.failed(error))
    }

    private mutating func end(_ ending: Ending) -> Step {
        state = .ended
        return Step(messages: [], ending: ending)
    }

    /// The call's status from its trailers.
    static func status(trailers: HPACKHeaders) -> Ending {
        guard let raw = trailers.first(name: "grpc-status") else {
            return .failed(.internal("the server's trailers carry no grpc-status"))
        }
        guard let code = Int(raw), code >= 0 else {
            return .failed(GRPCCallError(code: 2, message: "malformed grpc-status \"\(raw)\""))
        }
        if code == 0 { return .ok }
        let message = trailers.first(name: "grpc-message").map(GRPCCallError.percentDecode) ?? ""
        return .failed(GRPCCallError(code: code, message: message))
    }

    static func status(_ failure: GRPCMessageSplitter.Failure) -> GRPCCallError {
        switch failure {
        case let .tooLarge(length, limit):
            return GRPCCallError(
                code: GRPCCallError.resourceExhaustedCode,
                message: "received message larger than max (\(length) vs. \(limit))")
        case .compressed:
            return .internal("received a compressed message, but no compression was negotiated")
        case let .malformedFlag(flag):
            return .internal("malformed message: compressed flag \(flag)")
        }
    }
}
