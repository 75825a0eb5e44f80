import NIOCore
import NIOSSL

/// Holds a connection's bytes, ahead of TLS, while its client certificate is
/// checked after the handshake. NIOSSL's server handler closes a connection
/// that sends anything while such a check is pending, and a member sends
/// without waiting (its hello, heartbeat answers), so a check that takes
/// time (a DNS lookup) would lose the connection. Reads stop meanwhile (the
/// gate holds back the pipeline's read requests rather than touch autoRead,
/// which backpressure elsewhere may set), so what is held is at most the
/// read under way; on success the held bytes go on in order and the gate
/// leaves the pipeline.
final class ReadGate: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    private var holding = false
    private var held: [NIOAny] = []
    /// A read was asked for while holding: asked again on release.
    private var readAsked = false

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if holding { held.append(data) } else { context.fireChannelRead(data) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !holding { context.fireChannelReadComplete() }
    }

    func read(context: ChannelHandlerContext) {
        if holding { readAsked = true } else { context.read() }
    }

    /// From now on, keep what arrives. Called on the event loop.
    func hold() { holding = true }

    /// Passes on what was held (when `pass` and the connection is still open;
    /// a refused one is closing, its bytes are dropped), reads again and
    /// leaves the pipeline.
    func release(pass: Bool) {
        guard let context else { return }
        holding = false
        let bytes = held
        held = []
        guard pass, context.channel.isActive else { return }
        for data in bytes { context.fireChannelRead(data) }
        if !bytes.isEmpty { context.fireChannelReadComplete() }
        if readAsked {
            readAsked = false
            context.read()
        }
        context.pipeline.syncOperations.removeHandler(context: context).whenFailure { _ in }
    }
}

extension NIOPeerTransport.TLS {
    /// ``checkClient`` with the connection's reads held while it runs (see
    /// ``ReadGate``), as NIOSSL's server handler takes it.
    static func gatedCheck(_ check: @escaping ClientCheck, gate: ReadGate) -> _NIOAdditionalPeerCertificateVerificationCallback {
        { certificate, channel in
            gate.hold()
            // On the connection's loop: NIOSSL's own callback on it (added
            // after this one returns) then runs as soon as it completes, and
            // the release, a task later, finds NIOSSL active again.
            let verdict = check(certificate, channel).hop(to: channel.eventLoop)
            let bound = NIOLoopBound(gate, eventLoop: channel.eventLoop)
            verdict.whenComplete { result in
                let passed = (try? result.get()) != nil
                channel.eventLoop.execute { bound.value.release(pass: passed) }
            }
            return verdict
        }
    }
}
