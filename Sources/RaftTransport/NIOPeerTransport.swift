import LeanHTTP2
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Raft
import Synchronization

/// Raft messages over TCP with SwiftNIO. Each ``send(_:)`` call — one node-loop
/// cycle — becomes at most one write and one flush per peer. Outbound
/// connections are made lazily and re-made with exponential backoff; messages
/// for a peer that is not connected are dropped (Raft retries them). Inbound
/// bytes go through ``FrameDecoder``; a malformed frame closes the connection.
/// With ``TLS`` every connection, both ways, runs inside TLS (etcd's
/// `https://` peer URLs): a cluster's members all use it or none do.
///
/// Every member keeps a link to every peer in its directory, busy or not: once
/// it has advertised itself it re-sends its hello on each link every
/// ``linkPingInterval``. Raft alone would leave followers silent to each other,
/// so a member just elected would know its followers only since the election
/// (etcd's peer streams send link heartbeats for the same reason). A hello is
/// what every version of the receiver already accepts mid-stream, so the pings
/// need no protocol change. ``linkedPeers(of:)`` reports what they show.
public final class NIOPeerTransport: PeerTransport {
    /// The contexts for accepting and for opening peer connections, asked
    /// for each new connection (they may change: certificate rotation).
    public struct TLS: Sendable {
        /// Checks the certificate a connecting peer presented, after the
        /// handshake and before any of its data is read; a failed future
        /// closes the connection. Needs a server context that verifies
        /// client certificates.
        public typealias ClientCheck = @Sendable (NIOSSLCertificate, any Channel) -> EventLoopFuture<Void>

        public var server: @Sendable () -> NIOSSLContext
        public var client: @Sendable () -> NIOSSLContext
        public var checkClient: ClientCheck?
        public init(
            server: @escaping @Sendable () -> NIOSSLContext, client: @escaping @Sendable () -> NIOSSLContext,
            checkClient: ClientCheck? = nil
        ) {
            self.server = server
            self.client = client
            self.checkClient = checkClient
        }
        public init(server: NIOSSLContext, client: NIOSSLContext, checkClient: ClientCheck? = nil) {
            self.init(server: { server }, client: { client }, checkClient: checkClient)
        }
    }

    public struct Peer: Sendable, Hashable {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    private struct Outbound {
        var channel: (any Channel)?
        /// Since when `channel` has been usable (connected; with TLS, its
        /// handshake done).
        var upSince: ContinuousClock.Instant?
        var connecting = false
        /// Names the connection attempt under way: one that completes after
        /// ``setPeer(_:_:)`` moved the peer (or a later attempt replaced it)
        /// is closed instead of taking the peer's place.
        var attempt: UInt64 = 0
        var retryAt: NIODeadline = .distantPast
        var backoff: TimeAmount = .milliseconds(50)
    }

    private struct State {
        var peers: [NodeID: Peer] = [:]
        /// Addresses peers announced in their hellos, used for ids not in `peers`.
        var learned: [NodeID: Peer] = [:]
        /// This member's hello, sent first on every connection it opens.
        var hello: Hello?
        var outbound: [NodeID: Outbound] = [:]
        /// Connection attempts started, numbering ``Outbound/attempt``.
        var attempts: UInt64 = 0
        var handler: (@Sendable ([Message]) -> Void)?
        /// The listeners, one per ``listen(host:port:)``.
        var servers: [any Channel] = []
        /// Accepted connections: closing the listener does not close them.
        var inbound: [ObjectIdentifier: any Channel] = [:]
        var closed = false
        /// Members removed from the cluster: their hellos are answered with
        /// the removed notice.
        var removed: Set<NodeID> = []
        /// Called when a peer says this member was removed.
        var onRemoved: (@Sendable () -> Void)?
        /// Peers whose hellos arrive: since when without a break longer than
        /// ``linkBreak``, the latest, and how many of their connections are
        /// open (the entry goes when the last one closes).
        var links: [NodeID: Link] = [:]
        var pinger: RepeatedTask?
        /// Sets up connections that open with the HTTP/2 preface.
        var http2: (@Sendable (ChannelPipeline.SynchronousOperations) throws -> Void)?
        /// Peers whose snapshot is being encoded off this thread: what else
        /// is sent to them meanwhile is dropped (it would overtake it).
        var encoding: Set<NodeID> = []
    }

    private struct Link {
        var since: ContinuousClock.Instant
        var last: ContinuousClock.Instant
        var connections = 0
    }

    /// How often a member re-sends its hello on each link.
    public static let linkPingInterval = TimeAmount.milliseconds(500)
    /// A link whose pings stop for longer than this is down.
    public static let linkBreak = Duration.seconds(2)

    private let group: any EventLoopGroup
    private let state = Mutex(State())
    private let observer = Mutex<(any PeerTransportObserver)?>(nil)
    /// The contexts peer connections use (nil: in the clear).
    public let tls: TLS?
    /// Frames larger than this are refused on receive.
    public let maxFrame: Int

    public init(
        group: any EventLoopGroup, peers: [NodeID: Peer] = [:], maxFrame: Int = MessageCodec.defaultMaxFrame, tls: TLS? = nil
    ) {
        self.group = group
        self.maxFrame = maxFrame
        self.tls = tls
        state.withLock { $0.peers = peers }
    }

    /// Sets who hears what the transport sends, receives and drops.
    public func observe(with observer: any PeerTransportObserver) {
        self.observer.withLock { $0 = observer }
    }

    /// Listens for peers on `host:port` (port 0 picks a free one); returns the
    /// bound port.
    public func listen(host: String, port: Int) async throws -> Int {
        let maxFrame = self.maxFrame
        let tls = self.tls?.server
        let checkClient = self.tls?.checkClient
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [weak self] channel in
                self?.track(channel)
                let http2 = self?.state.withLock { $0.http2 }
                return channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        if let checkClient {
                            let gate = ReadGate()
                            try channel.pipeline.syncOperations.addHandler(gate)
                            try channel.pipeline.syncOperations.addHandler(
                                NIOSSLServerHandler._makeSSLServerHandler(
                                    context: tls(), additionalPeerCertificateVerificationCallback: TLS.gatedCheck(checkClient, gate: gate)))
                        } else {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls()))
                        }
                    }
                    let receiver = FrameReceiver(
                        maxFrame: maxFrame, deliver: { messages in self?.deliver(messages) },
                        hello: { hello, first in self?.learn(hello, first: first) ?? false },
                        lost: { peer in self?.linkLost(peer) },
                        received: { bytes, peer in self?.observer.withLock { $0 }?.received(bytes: bytes, from: peer) },
                        failed: { peer in self?.observer.withLock { $0 }?.receiveFailed(from: peer) })
                    // Read as a frame length, `PRI ` is over 500 MiB: no
                    // Raft connection can open with it.
                    try channel.pipeline.syncOperations.addHandler(
                        PrefaceSniffer(length: 4, http2: http2, other: {
                            try $0.addHandler(IdleStateHandler(readTimeout: Self.inboundReadTimeout))
                            try $0.addHandler(receiver)
                        }))
                }
            }
        let server: any Channel
        do {
            server = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            throw ListenError(network: "tcp", address: ListenError.address(host: host, port: port), error)
        }
        state.withLock { $0.servers.append(server) }
        return server.localAddress?.port ?? port
    }

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let accepted = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.inbound[id] = channel
            return true
        }
        guard accepted else {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.inbound.removeValue(forKey: id) }
        }
    }

    /// Serves HTTP/2 on the peer port beside Raft frames: connections accepted
    /// from now on that open with its preface get the handlers `configure`
    /// adds (inside TLS when peers use it). Members forward client calls
    /// that need the leader this way, as etcd's do over peer URLs.
    public func serveHTTP2(_ configure: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void) {
        state.withLock { $0.http2 = configure }
    }

    /// Adds or moves a peer (a member added, or its address changed).
    public func setPeer(_ id: NodeID, _ peer: Peer) {
        let stale = state.withLock { state -> (any Channel)? in
            state.peers[id] = peer
            return state.outbound.removeValue(forKey: id)?.channel
        }
        stale?.close(promise: nil)
    }

    /// Announces this member as `id`, reached at `peer`, on every connection it
    /// opens from now on.
    public func advertise(_ id: NodeID, as peer: Peer) {
        let start = state.withLock { state -> Bool in
            state.hello = Hello(id: id, host: peer.host, port: peer.port)
            return state.pinger == nil && !state.closed
        }
        guard start else { return }
        let task = group.next().scheduleRepeatedTask(initialDelay: .zero, delay: Self.linkPingInterval) { [weak self] _ in
            self?.ping()
        }
        let late = state.withLock { state -> Bool in
            guard state.pinger == nil, !state.closed else { return true }
            state.pinger = task
            return false
        }
        if late { task.cancel() }
    }

    /// Sends this member's hello on the link to every peer in the directory,
    /// opening links that are down (as the backoff allows).
    private func ping() {
        let (hello, targets) = state.withLock { state -> (Hello?, [NodeID]) in
            // A member whose node has stopped (a failed disk) must not look alive.
            guard let hello = state.hello, state.handler != nil else { return (nil, []) }
            return (hello, state.peers.keys.filter { $0 != hello.id && !state.removed.contains($0) })
        }
        guard let hello else { return }
        let bytes = hello.encoded()
        let observer = self.observer.withLock { $0 }
        for peer in targets {
            guard let channel = connection(to: peer), channel.isWritable else { continue }
            channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
            observer?.sent(bytes: bytes.count, to: peer)
        }
    }

    /// The peers whose links are up both ways, each with since when without
    /// a break (etcd's ActiveSince): their pings arrive, and this member's
    /// own connection to them is up (a peer that can reach this member but
    /// not be reached by it is no use to a leader). What a membership check
    /// may count on beyond the Raft messages it has seen.
    public func linkedPeers(of member: NodeID) -> [NodeID: ContinuousClock.Instant] {
        let now = ContinuousClock.now
        return state.withLock { state in
            var linked: [NodeID: ContinuousClock.Instant] = [:]
            for (peer, link) in state.links where now - link.last <= Self.linkBreak {
                guard let out = state.outbound[peer], out.channel?.isActive == true, let up = out.upSince else { continue }
                linked[peer] = max(link.since, up)
            }
            return linked
        }
    }

    /// Records a peer's address and contact from its hello; false if that
    /// peer was removed from the cluster (the connection then gets the
    /// removed notice).
    /// `first`: the first hello on its connection.
    private func learn(_ hello: Hello, first: Bool) -> Bool {
        let now = ContinuousClock.now
        return state.withLock { state in
            if state.removed.contains(hello.id) { return false }
            state.learned[hello.id] = Peer(host: hello.host, port: hello.port)
            var link = state.links[hello.id] ?? Link(since: now, last: now)
            if now - link.last > Self.linkBreak { link.since = now }
            link.last = now
            if first { link.connections += 1 }
            state.links[hello.id] = link
            return true
        }
    }

    /// A connection that carried `peer`'s hellos closed. With none left the
    /// peer is gone (killed, or restarting) until its pings come again; an
    /// older connection closing after a reconnect changes nothing.
    private func linkLost(_ peer: NodeID) {
        state.withLock { state in
            guard var link = state.links[peer] else { return }
            link.connections -= 1
            state.links[peer] = link.connections > 0 ? link : nil
        }
    }

    /// The members removed from the cluster (from the replicated directory).
    ///
    /// Their addresses and outbound links are forgotten too (ids are never
    /// reused): a removed member that still runs no longer holds a link open
    /// for the life of this process (review finding).
    public func setRemoved(_ ids: Set<NodeID>) {
        let stale = state.withLock { state -> [any Channel] in
            state.removed = ids
            var channels: [any Channel] = []
            for id in ids where state.peers[id] != nil || state.learned[id] != nil || state.outbound[id] != nil {
                state.peers[id] = nil
                state.learned[id] = nil
                if let channel = state.outbound.removeValue(forKey: id)?.channel { channels.append(channel) }
            }
            return channels
        }
        for channel in stale { channel.close(promise: nil) }
    }

    /// Runs `body` when a peer answers this member's hello with the removed
    /// notice: another member's directory shows this one removed, a removal it
    /// may never have applied itself (it was down or cut off then).
    public func onRemoved(_ body: @escaping @Sendable () -> Void) {
        state.withLock { $0.onRemoved = body }
    }

    private func heardRemoved() {
        state.withLock { $0.onRemoved }?()
    }

    public func register(_ member: NodeID, deliver: @escaping @Sendable ([Message]) -> Void) {
        state.withLock { $0.handler = deliver }
    }

    public func unregister(_ member: NodeID) {
        state.withLock { $0.handler = nil }
    }

    private func deliver(_ messages: [Message]) {
        guard let handler = state.withLock({ $0.handler }) else { return }
        handler(messages)
    }

    /// A connection whose sent data the peer's kernel leaves unacknowledged
    /// this long is dropped (Linux TCP_USER_TIMEOUT), and redialed: a link
    /// silently lost in the network (conntrack or NAT state gone) would
    /// otherwise look up until the kernel gives up retransmitting, ~15 min,
    /// while every message to that peer is buffered and then dropped. A
    /// stopped peer process still acknowledges (its kernel does), until its
    /// receive buffer is full.
    static let userTimeoutMilliseconds: SocketOptionValue = 10_000

    /// The client bootstrap's socket options: no Nagle delay, and on Linux
    /// the user timeout above (TCP_USER_TIMEOUT is 18 there).
    static func peerSocketOptions(_ bootstrap: ClientBootstrap) -> ClientBootstrap {
        let bootstrap = bootstrap.channelOption(.socketOption(.tcp_nodelay), value: 1)
        #if os(Linux)
        return bootstrap.channelOption(
            ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: 18)), value: userTimeoutMilliseconds)
        #else
        return bootstrap
        #endif
    }

    /// Up to this much may wait in a peer's socket buffer before sends to it
    /// are dropped (a peer that does not read is not buffered for).
    static let waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 4 << 20, high: 32 << 20)

    @discardableResult
    public func send(_ messages: [Message]) -> Set<NodeID> {
        guard !messages.isEmpty else { return [] }
        var batches: [NodeID: [Message]] = [:]
        for message in messages { batches[message.to, default: []].append(message) }
        let observer = self.observer.withLock { $0 }
        var dropped: Set<NodeID> = []
        for (peer, batch) in batches {
            // Bounded memory per peer: a peer that does not read (or whose
            // snapshot is still being encoded) is not buffered for.
            guard let channel = connection(to: peer), channel.isWritable, !state.withLock({ $0.encoding.contains(peer) }) else {
                observer?.sendFailed(to: peer)
                dropped.insert(peer)
                continue
            }
            // A snapshot is copied several times while encoded: on a pool
            // thread, not on the Raft loop calling here (whose heartbeats to
            // the other peers would wait) nor on an event loop (whose clients
            // would). Until it is handed to the connection, the peer's other
            // messages are dropped: written sooner, they would overtake it.
            // (Raft sends a snapshot only to a follower it has paused.)
            if batch.contains(where: { ($0.snapshot?.data.count ?? 0) >= Self.encodeOffLoopBytes }) {
                state.withLock { _ = $0.encoding.insert(peer) }
                NIOThreadPool.singleton.submit { [weak self] work in
                    if work == .active, channel.isActive {
                        let bytes = Self.encode(batch)
                        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
                        observer?.sent(bytes: bytes.count, to: peer)
                    }
                    self?.state.withLock { _ = $0.encoding.remove(peer) }
                }
                continue
            }
            let bytes = Self.encode(batch)
            channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
            observer?.sent(bytes: bytes.count, to: peer)
        }
        return dropped
    }

    /// Snapshots at least this large are encoded off the sending thread.
    static let encodeOffLoopBytes = 1 << 20

    private static func encode(_ batch: [Message]) -> [UInt8] {
        var bytes: [UInt8] = []
        for message in batch { MessageCodec.encodeFrames(message, into: &bytes) }
        return bytes
    }

    /// The connected channel to `peer`, starting a connection if none is up and
    /// the backoff allows; nil while not connected.
    private func connection(to peer: NodeID) -> (any Channel)? {
        let now = NIODeadline.now()
        let attempt = state.withLock { state -> (Peer, UInt64)? in
            guard !state.closed, let address = state.peers[peer] ?? state.learned[peer] else { return nil }
            var out = state.outbound[peer] ?? Outbound()
            defer { state.outbound[peer] = out }
            if let channel = out.channel {
                if channel.isActive { return nil }
                // Lost: wait before trying again. (A TLS handshake that fails
                // closes a connection TCP had opened; without this wait every
                // cycle would start another.) A link that stayed up a while
                // starts the backoff over; one that drops as soon as it is
                // made (a peer that accepts and closes) keeps growing it.
                if let up = out.upSince, ContinuousClock.now - up >= .seconds(1) { out.backoff = .milliseconds(50) }
                out.channel = nil
                out.upSince = nil
                out.retryAt = now + out.backoff
                out.backoff = min(out.backoff * 2, .seconds(2))
            }
            guard !out.connecting, now >= out.retryAt else { return nil }
            out.connecting = true
            state.attempts &+= 1
            out.attempt = state.attempts
            return (address, out.attempt)
        }
        if let (address, number) = attempt { connect(peer, address, attempt: number) }
        // Not before its TLS handshake is done: NIOSSL holds what is written
        // meanwhile in a buffer of its own, which the water mark does not
        // see, so a peer that never finishes the handshake (stopped, or its
        // accept queue stuck) would be buffered for without bound (review finding).
        return state.withLock { state in
            guard let out = state.outbound[peer], out.upSince != nil else { return nil }
            return out.channel
        }
    }

    /// A TLS handshake not done by then is given up (the connection closes,
    /// and the next is made after the backoff).
    static let handshakeTimeout: TimeAmount = .seconds(5)

    /// An accepted Raft connection that brings nothing for this long is
    /// closed: a sender pings every 500 ms, so only a link whose other end is
    /// gone without a FIN (its host crashed, a partition timed its socket
    /// out) goes quiet, and it would otherwise keep its descriptor and a
    /// half-received frame or snapshot until shutdown. (etcd's peer listener
    /// has a 5 s read timeout for the same reason.)
    static let inboundReadTimeout: TimeAmount = .seconds(5)

    private func connect(_ peer: NodeID, _ address: Peer, attempt: UInt64) {
        let tls = self.tls?.client
        let future = Self.peerSocketOptions(ClientBootstrap(group: group))
            // NIO's default (64 KiB) dropped whole cycles under load; forwarded
            // proposals are not retried by Raft, so a drop cost a client 7 s.
            .channelOption(.writeBufferWaterMark, value: Self.waterMark)
            .connectTimeout(.seconds(1))
            .channelInitializer { [weak self] channel in
                // Peers send nothing back on a connection this member opened,
                // except the removed notice.
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        // An IP address is checked against the certificate's
                        // IP names (NIOSSL uses the socket's address); SNI takes names only.
                        let name = address.host.contains(where: \.isLetter) && !address.host.contains(":") ? address.host : nil
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls(), serverHostname: name))
                        // Only a completed handshake shows the peer healthy.
                        try channel.pipeline.syncOperations.addHandler(
                            HandshakeWatcher { [weak channel] in if let channel { self?.handshakeCompleted(peer, on: channel) } })
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        FrameReceiver(maxFrame: 64, deliver: { _ in }, hello: { _, _ in true },
                                      removed: { self?.heardRemoved() }))
                }
            }
            .connect(host: address.host, port: address.port)
        future.whenComplete { [weak self] result in
            guard let self else { return }
            let leftover = self.state.withLock { state -> (any Channel)? in
                guard var out = state.outbound[peer], out.attempt == attempt else {
                    // Superseded (the peer moved meanwhile): not this peer's link.
                    if case let .success(channel) = result { return channel }
                    return nil
                }
                out.connecting = false
                switch result {
                case let .success(channel):
                    if state.closed { return channel }
                    if let hello = state.hello {
                        channel.writeAndFlush(channel.allocator.buffer(bytes: hello.encoded()), promise: nil)
                    }
                    out.channel = channel
                    out.upSince = tls == nil ? .now : nil
                    if tls != nil {
                        // A handshake done before this ran (the thread that
                        // connected was descheduled meanwhile) found no
                        // channel to vouch for: look again now.
                        channel.eventLoop.execute { [weak self] in
                            let watcher = try? channel.pipeline.syncOperations.handler(type: HandshakeWatcher.self)
                            if watcher?.isCompleted == true { self?.handshakeCompleted(peer, on: channel) }
                        }
                        channel.eventLoop.scheduleTask(in: Self.handshakeTimeout) { [weak self] in
                            let stuck = self?.state.withLock {
                                $0.outbound[peer]?.channel === channel && $0.outbound[peer]?.upSince == nil
                            }
                            if stuck == true { channel.close(promise: nil) }
                        }
                    }
                    if let observer = self.observer.withLock({ $0 }) {
                        observer.connected(to: peer)
                        channel.closeFuture.whenComplete { _ in observer.disconnected(from: peer) }
                    }
                case .failure:
                    out.retryAt = .now() + out.backoff
                    out.backoff = min(out.backoff * 2, .seconds(2))
                }
                state.outbound[peer] = out
                return nil
            }
            leftover?.close(promise: nil)
        }
    }

    /// Marks the connection to `peer` up, if `channel` is still it (a
    /// connection replaced mid-handshake must not vouch for its successor).
    /// The connect's completion has set it by then: a handshake takes a
    /// round trip after it.
    private func handshakeCompleted(_ peer: NodeID, on channel: any Channel) {
        state.withLock {
            guard $0.outbound[peer]?.channel === channel else { return }
            $0.outbound[peer]?.upSince = .now
        }
    }

    /// Closes the listener and every connection, inbound and outbound.
    public func shutdown() async {
        let channels = state.withLock { state -> [any Channel] in
            state.closed = true
            state.pinger?.cancel()
            state.pinger = nil
            var all = state.outbound.values.compactMap(\.channel) + Array(state.inbound.values)
            all += state.servers
            state.outbound = [:]
            state.inbound = [:]
            state.servers = []
            return all
        }
        // All at once: closing a TLS connection may wait for the peer.
        for channel in channels { channel.close(promise: nil) }
        for channel in channels { try? await channel.closeFuture.get() }
    }
}

/// Reports a completed TLS handshake on a connection this member opened.
final class HandshakeWatcher: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let completed: () -> Void
    /// Whether the handshake is done (read on the channel's event loop).
    private(set) var isCompleted = false

    init(_ completed: @escaping () -> Void) { self.completed = completed }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted? = event as? TLSUserEvent {
            isCompleted = true
            completed()
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Turns inbound bytes into messages; closes the connection on a bad frame.
final class FrameReceiver: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var decoder: FrameDecoder
    private let deliver: ([Message]) -> Void
    /// Returns false for a peer removed from the cluster: it is told so, and
    /// the connection closes. Also told whether it is the connection's first.
    private let hello: (Hello, Bool) -> Bool
    private let removed: () -> Void
    /// Hears that a connection whose sender said hello closed.
    private let lost: (NodeID) -> Void
    /// Hears the bytes of each read, once the sender is known.
    private let received: (Int, NodeID) -> Void
    /// Hears that a known sender's frame did not decode.
    private let failed: (NodeID) -> Void
    /// Who sent this connection's bytes: from its hello, or its first message.
    private var sender: NodeID?
    /// Whether the sender said hello (and so counts as a link).
    private var greeted = false
    /// Set once a removed member was told so: nothing more it sends is
    /// delivered while the notice is written and the connection closes.
    private var refused = false

    init(
        maxFrame: Int, deliver: @escaping ([Message]) -> Void, hello: @escaping (Hello, Bool) -> Bool,
        lost: @escaping (NodeID) -> Void = { _ in }, removed: @escaping () -> Void = {},
        received: @escaping (Int, NodeID) -> Void = { _, _ in }, failed: @escaping (NodeID) -> Void = { _ in }
    ) {
        self.decoder = FrameDecoder(maxFrame: maxFrame)
        self.deliver = deliver
        self.hello = hello
        self.lost = lost
        self.removed = removed
        self.received = received
        self.failed = failed
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let sender, greeted { lost(sender) }
        context.fireChannelInactive()
    }

    /// The inbound read timeout (``NIOPeerTransport/inboundReadTimeout``).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let buffer = unwrapInboundIn(data)
        do {
            var messages: [Message] = []
            defer { if let sender { received(buffer.readableBytes, sender) } }
            for frame in try decoder.feedFrames(buffer.readableBytesView) {
                switch frame {
                case let .message(message):
                    if sender == nil { sender = message.from }
                    messages.append(message)
                case let .hello(announced):
                    sender = announced.id
                    guard hello(announced, !greeted) else {
                        refused = true
                        let channel = context.channel
                        let notice = channel.allocator.buffer(bytes: Frame.removedFrame)
                        context.writeAndFlush(NIOAny(notice)).whenComplete { _ in channel.close(promise: nil) }
                        return
                    }
                    greeted = true
                case .removed: removed()
                }
            }
            if !messages.isEmpty { deliver(messages) }
        } catch {
            if let sender { failed(sender) }
            context.close(promise: nil)
        }
    }
}
