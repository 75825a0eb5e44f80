import NIOCore
import NIOPosix
import Raft
import RaftTransport
import Synchronization
import Testing

/// Collects what a transport delivered.
final class Inbox: Sendable {
    private let messages = Mutex<[Message]>([])
    func add(_ batch: [Message]) { messages.withLock { $0 += batch } }
    var all: [Message] { messages.withLock { $0 } }

    func wait(for count: Int, seconds: Int = 10) async throws {
        for _ in 0..<(seconds * 100) where all.count < count {
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

@Suite(.serialized, .timeLimit(.minutes(1))) struct NIOPeerTransportTests {
    /// Keeps sending until the lazily made connection is up and `count` arrived.
    func sendUntilDelivered(_ transport: NIOPeerTransport, _ messages: [Message], to inbox: Inbox, count: Int) async throws {
        for _ in 0..<500 where inbox.all.count < count {
            transport.send(messages)
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    @Test func messagesCrossLoopbackInOrder() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let a = NIOPeerTransport(group: group)
        let b = NIOPeerTransport(group: group)
        let portB = try await b.listen(host: "127.0.0.1", port: 0)
        a.setPeer(2, .init(host: "127.0.0.1", port: portB))
        let inbox = Inbox()
        b.register(2) { inbox.add($0) }
        // Wait for the connection with a probe, then send a numbered burst.
        try await sendUntilDelivered(a, [Message(kind: .heartbeat, from: 1, to: 2, term: 0)], to: inbox, count: 1)
        let burst = (1...200).map { i in
            Message(kind: .append, from: 1, to: 2, term: 7, index: UInt64(i),
                    entries: [Entry(term: 7, index: UInt64(i), data: Array(repeating: UInt8(i % 256), count: i))])
        }
        let before = inbox.all.count
        a.send(burst)
        try await inbox.wait(for: before + 200)
        let received = inbox.all.dropFirst(before)
        #expect(received.map(\.index) == (1...200).map(UInt64.init))
        #expect(Array(received) == burst)
        await a.shutdown()
        await b.shutdown()
        try await group.shutdownGracefully()
    }

    /// A frame that does not decode closes the connection and is counted
    /// against the peer that sent the frames before it
    /// (`etcd_network_peer_received_failures_total{From}`).
    @Test func aFrameThatDoesNotDecodeIsCountedAgainstItsSender() async throws {
        final class Failures: PeerTransportObserver {
            let from = Mutex<[NodeID]>([])
            func receiveFailed(from peer: NodeID) { from.withLock { $0.append(peer) } }
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let b = NIOPeerTransport(group: group)
        let failures = Failures()
        b.observe(with: failures)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        let inbox = Inbox()
        b.register(2) { inbox.add($0) }
        var bytes: [UInt8] = []
        MessageCodec.encodeFrames(Message(kind: .heartbeat, from: 7, to: 2, term: 1), into: &bytes)
        let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).get()
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).get()
        try await inbox.wait(for: 1)
        #expect(inbox.all.map(\.from) == [7])
        let garbage: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]  // a length past any frame
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: garbage)).get()
        try await channel.closeFuture.get()  // closed by b
        #expect(failures.from.withLock { $0 } == [7])
        await b.shutdown()
        try await group.shutdownGracefully()
    }

    /// A large snapshot is encoded on a pool thread, not on the thread that
    /// sends (the Raft loop, whose heartbeats would wait) nor an event loop;
    /// until it is handed to the connection the peer's other messages are
    /// dropped (they would overtake it), then they follow it.
    @Test func aSnapshotIsEncodedOffTheSendersThreadAndKeepsItsPlace() async throws {
        final class Sent: PeerTransportObserver {
            let bytes = Mutex(0)
            func sent(bytes: Int, to peer: NodeID) { self.bytes.withLock { $0 += bytes } }
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let a = NIOPeerTransport(group: group)
        let b = NIOPeerTransport(group: group)
        let sent = Sent()
        a.observe(with: sent)
        let port = try await b.listen(host: "127.0.0.1", port: 0)
        a.setPeer(2, .init(host: "127.0.0.1", port: port))
        let inbox = Inbox()
        b.register(2) { inbox.add($0) }
        try await sendUntilDelivered(a, [Message(kind: .heartbeat, from: 1, to: 2, term: 1)], to: inbox, count: 1)
        var snapshot = Message(kind: .snapshot, from: 1, to: 2, term: 1)
        snapshot.snapshot = Snapshot(
            metadata: SnapshotMetadata(index: 5, term: 1, confState: ConfState(voters: [1, 2], learners: [])),
            data: [UInt8](repeating: 7, count: 48 << 20))
        let before = inbox.all.count
        let bytesBefore = sent.bytes.withLock { $0 }
        #expect(a.send([snapshot]).isEmpty)
        // Encoding 48 MiB takes tens of milliseconds: not done on this thread.
        #expect(sent.bytes.withLock { $0 } == bytesBefore, "encoded before send returned")
        #expect(a.send([Message(kind: .append, from: 1, to: 2, term: 1, index: 6)]) == [2], "held back while encoding")
        try await inbox.wait(for: before + 1, seconds: 30)
        try await sendUntilDelivered(a, [Message(kind: .append, from: 1, to: 2, term: 1, index: 7)], to: inbox, count: before + 2)
        let arrived = Array(inbox.all.dropFirst(before))
        #expect(arrived.first?.kind == .snapshot && arrived.first?.snapshot?.data.count == 48 << 20)
        #expect(arrived.dropFirst().allSatisfy { $0.kind == .append && $0.index == 7 } && arrived.count >= 2)
        await a.shutdown()
        await b.shutdown()
        try await group.shutdownGracefully()
    }

    @Test func reconnectsAfterThePeerRestarts() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let a = NIOPeerTransport(group: group)
        var b = NIOPeerTransport(group: group)
        // Not an ephemeral port (port 0): once released, one of those can be
        // taken as the source port of another test's connection, and the
        // restart below could not bind it again.
        var port = 0
        for _ in 0..<100 where port == 0 {
            port = (try? await b.listen(host: "127.0.0.1", port: Int.random(in: 20_000..<32_000))) ?? 0
        }
        try #require(port != 0, "no free port below the ephemeral range")
        a.setPeer(2, .init(host: "127.0.0.1", port: port))
        let first = Inbox()
        b.register(2) { first.add($0) }
        try await sendUntilDelivered(a, [Message(kind: .heartbeat, from: 1, to: 2, term: 1)], to: first, count: 1)
        await b.shutdown()
        // The peer comes back on the same port; sends resume after backoff.
        b = NIOPeerTransport(group: group)
        // A connection accepted while shutting down may hold the port a
        // moment longer (CI saw EADDRINUSE once): retried for up to 5 s.
        var rebound = false
        for _ in 0..<50 where !rebound {
            rebound = (try? await b.listen(host: "127.0.0.1", port: port)) != nil
            if !rebound { try await Task.sleep(for: .milliseconds(100)) }
        }
        try #require(rebound, "port \(port) stayed in use")
        let second = Inbox()
        b.register(2) { second.add($0) }
        try await sendUntilDelivered(a, [Message(kind: .heartbeat, from: 1, to: 2, term: 2)], to: second, count: 1)
        #expect(second.all.first?.term == 2)
        await a.shutdown()
        await b.shutdown()
        try await group.shutdownGracefully()
    }

    /// Two members that never send each other a Raft message (two followers)
    /// are still linked, by their hellos; a link that closes is down at once.
    @Test func linkPingsKeepSilentPeersInTouch() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let a = NIOPeerTransport(group: group)
        let b = NIOPeerTransport(group: group)
        let portA = try await a.listen(host: "127.0.0.1", port: 0)
        let portB = try await b.listen(host: "127.0.0.1", port: 0)
        a.setPeer(2, .init(host: "127.0.0.1", port: portB))
        b.setPeer(1, .init(host: "127.0.0.1", port: portA))
        #expect(a.linkedPeers(of: 1).isEmpty)
        // Only a member whose node is running pings.
        a.register(1) { _ in }
        b.register(2) { _ in }
        let start = ContinuousClock.now
        a.advertise(1, as: .init(host: "127.0.0.1", port: portA))
        b.advertise(2, as: .init(host: "127.0.0.1", port: portB))
        for _ in 0..<300 where a.linkedPeers(of: 1)[2] == nil || b.linkedPeers(of: 2)[1] == nil {
            try await Task.sleep(for: .milliseconds(10))
        }
        let since = try #require(a.linkedPeers(of: 1)[2])
        #expect(since >= start)
        #expect(b.linkedPeers(of: 2)[1] != nil)
        // The link stays up across pings, with its first contact kept.
        try await Task.sleep(for: .milliseconds(1200))
        #expect(a.linkedPeers(of: 1)[2] == since)

        // C reaches A, but A cannot reach C (a wrong address, a one-way
        // firewall): C's pings arrive, yet C is no use to A as a follower.
        let c = NIOPeerTransport(group: group)
        let portC = try await c.listen(host: "127.0.0.1", port: 0)
        a.setPeer(3, .init(host: "127.0.0.1", port: 1))
        c.setPeer(1, .init(host: "127.0.0.1", port: portA))
        c.register(3) { _ in }
        c.advertise(3, as: .init(host: "127.0.0.1", port: portC))
        try await Task.sleep(for: .milliseconds(1200))
        #expect(a.linkedPeers(of: 1)[3] == nil)

        // A member whose node stopped (a failed disk) stops pinging: after
        // the break it no longer counts, though its process and sockets live on.
        a.setPeer(3, .init(host: "127.0.0.1", port: portC))
        for _ in 0..<300 where a.linkedPeers(of: 1)[3] == nil {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(a.linkedPeers(of: 1)[3] != nil, "reachable both ways")
        c.unregister(3)
        for _ in 0..<300 where a.linkedPeers(of: 1)[3] != nil {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(a.linkedPeers(of: 1)[3] == nil, "C's pings stopped with its node")
        await c.shutdown()
        // B goes away: its connection closes, and A counts the link down
        // without waiting out the break (2 s after B's last ping; the wait
        // stays under that, with room for a loaded machine).
        await b.shutdown()
        for _ in 0..<140 where a.linkedPeers(of: 1)[2] != nil {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(a.linkedPeers(of: 1)[2] == nil)
        await a.shutdown()
        try await group.shutdownGracefully()
    }
}
