import Foundation
import NIOCore
import NIOHTTP1

/// An HTTP/1.1 response from a plain endpoint.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    /// More header fields (name, value).
    public var headers: [(String, String)] = []

    public init(status: Int = 200, contentType: String = "application/json", body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// Go's answer to a method an endpoint does not take (etcd's
    /// `allowMethod`): 405, the method it takes in `Allow`, `http.Error`'s body.
    static func methodNotAllowed(allow: String) -> HTTPResponse {
        var response = HTTPResponse(status: 405, contentType: "text/plain; charset=utf-8", body: Array("Method Not Allowed\n".utf8))
        response.headers = [("Allow", allow), ("X-Content-Type-Options", "nosniff")]
        return response
    }
}

/// What a plain endpoint is asked: the method and the query's parameters.
public struct HTTPRequest: Sendable {
    public var method: String
    /// Parameters in order, percent-decoded (`exclude=NOSPACE&exclude=CORRUPT`).
    public var query: [(name: String, value: String)]

    public init(method: String = "GET", query: [(name: String, value: String)] = []) {
        self.method = method
        self.query = query
    }

    /// From a request line's target (`/health?exclude=NOSPACE`).
    init(method: String, uri: String) {
        let items = URLComponents(string: uri)?.queryItems ?? []
        self.init(method: method, query: items.map { ($0.name, $0.value ?? "") })
    }

    /// Every value given for `name`.
    public func values(_ name: String) -> [String] { query.filter { $0.name == name }.map(\.value) }
}

/// Serves GET requests on the plain HTTP endpoints of the router (`/metrics`,
/// `/health`, `/version`); anything else is 404. The endpoints refuse the
/// methods etcd's refuse.
final class HTTPEndpointHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let router: GRPCRouterBox
    private var request: HTTPRequestHead?

    init(router: GRPCRouterBox) {
        self.router = router
    }

    /// On shutdown an HTTP/1.1 connection just closes (answers are written
    /// as soon as they are ready, so none is pending for long).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is GRPCServer.GoingAway { context.close(promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .head(head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
            // Each endpoint takes the methods etcd's does (405 with `Allow`).
            guard let endpoint = router.current.http[path] else {
                write(context: context, head: head, HTTPResponse(status: 404, contentType: "text/plain", body: Array("404 page not found\n".utf8)))
                return
            }
            let promise = context.eventLoop.makePromise(of: HTTPResponse.self)
            let asked = HTTPRequest(method: head.method.rawValue, uri: head.uri)
            promise.completeWithTask { await endpoint(asked) }
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            promise.futureResult.whenSuccess { response in
                let (handler, context) = bound.value
                handler.write(context: context, head: head, response)
            }
        }
    }

    private func write(context: ChannelHandlerContext, head: HTTPRequestHead, _ response: HTTPResponse) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.count))
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        // `Connection: close`, or HTTP/1.0 without keep-alive: closed after
        // the answer, as Go's server does (a client reading to the end
        // would otherwise wait).
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: response.status)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
