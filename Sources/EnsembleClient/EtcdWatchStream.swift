import EnsembleAPI
import SwiftProtobuf

/// One etcd `Watch` call: a bidirectional stream that carries any number of
/// watchers. Send create, cancel and progress requests; read responses, each
/// tagged with its watcher's id.
///
/// ```swift
/// let stream = etcd.watch()
/// var create = Etcdserverpb_WatchCreateRequest()
/// create.key = Data("config/".utf8)
/// create.rangeEnd = Data("config0".utf8)
/// try stream.create(create)
/// for try await response in stream.responses {
///     for event in response.events { … }
/// }
/// ```
///
/// The responses go on until the call ends: ``cancel()`` ends it (etcd
/// keeps a half-closed watch streaming, so ``finish()`` does not), and a
/// server that ends it makes them throw ``GRPCCallError``.
public struct EtcdWatchStream: Sendable {
    public let call: GRPCClientStream

    init(_ call: GRPCClientStream) {
        self.call = call
    }

    /// Sends any watch request.
    public func send(_ request: Etcdserverpb_WatchRequest) throws {
        do {
            call.send(try request.serializedBytes())
        } catch {
            throw GRPCCallError(code: GRPCCallError.internalCode, message: "cannot encode etcdserverpb.WatchRequest: \(error)")
        }
    }

    /// Creates a watcher; the server answers with `created` and the watcher's id.
    public func create(_ request: Etcdserverpb_WatchCreateRequest) throws {
        var watch = Etcdserverpb_WatchRequest()
        watch.createRequest = request
        try send(watch)
    }

    /// Cancels one watcher; the server answers with `canceled`.
    public func cancel(watchID: Int64) throws {
        var watch = Etcdserverpb_WatchRequest()
        watch.cancelRequest.watchID = watchID
        try send(watch)
    }

    /// Half-closes the stream: no more requests; responses still come.
    public func finish() { call.finish() }

    /// Ends the call and every watcher on it.
    public func cancel() { call.cancel() }

    /// The server's responses, decoded.
    public var responses: Responses { Responses(base: call.messages) }

    /// The decoded responses of a watch stream; a message that does not decode
    /// ends them with 13 INTERNAL.
    public struct Responses: AsyncSequence, Sendable {
        public typealias Element = Etcdserverpb_WatchResponse
        let base: AsyncThrowingStream<[UInt8], any Error>

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(base: base.makeAsyncIterator())
        }

        public struct AsyncIterator: AsyncIteratorProtocol {
            var base: AsyncThrowingStream<[UInt8], any Error>.AsyncIterator

            public mutating func next() async throws -> Etcdserverpb_WatchResponse? {
                guard let bytes = try await base.next() else { return nil }
                do {
                    return try Etcdserverpb_WatchResponse(serializedBytes: bytes)
                } catch {
                    throw GRPCCallError(
                        code: GRPCCallError.internalCode, message: "cannot decode etcdserverpb.WatchResponse: \(error)")
                }
            }
        }
    }
}
