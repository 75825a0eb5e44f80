import NIOCore
import NIOSSL

/// Holds a connection's bytes, ahead of TLS, while its client certificate is
/// checked after the handshake. NIOSSL's server handler closes a connection
/// that sends anything while such a check is pending, and a member sends
/// without waiting (its hello, heartbeat answers), so a check that takes
/// time (a DNS lookup) would lose the connection. Reads stop meanwhile, so
/// what is held is at most the read or two already under way; on success
/// the held bytes go on in order and the gate leaves the pipeline.
final class ReadGate: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var context: ChannelHandlerContext?
    private var holding = false
    private var held: [NIOAny] = []

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if holding { held.append(data) } else { context.fireChannelRead(data) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !holding { context.fireChannelReadComplete() }
    }

    /// From now on, keep what arrives. Called on the event loop.
    func hold() {
        holding = true
        context?.channel.setOption(.autoRead, value: false).whenFailure { _ in }
    }

    /// Passes on what was held (when `pass`; a refused connection is closing,
    /// its bytes are dropped), reads again and leaves the pipeline.
    func release(pass: Bool) {
        guard let context else { return }
        holding = false
        let bytes = held
        held = []
        if pass {
            for data in bytes { context.fireChannelRead(data) }
            if !bytes.isEmpty { context.fireChannelReadComplete() }
            context.channel.setOption(.autoRead, value: true).whenFailure { _ in }
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
            let verdict = check(certificate, channel)
            let bound = NIOLoopBound(gate, eventLoop: channel.eventLoop)
            // After NIOSSL has taken the verdict (its callback is added after
            // this one), so that it is active again when the bytes arrive.
            verdict.whenComplete { result in
                let passed = (try? result.get()) != nil
                channel.eventLoop.execute { bound.value.release(pass: passed) }
            }
            return verdict
        }
    }
}
