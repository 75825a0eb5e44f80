import EnsembleClient
import EnsembleAPI
import Foundation
import KV
import NIOCore
import Raft
import SwiftProtobuf
import Synchronization

/// etcd's Watch service: one bidirectional stream per `Watch` call, carrying
/// any number of watchers. The member's ``WatchHub`` decides what each watcher
/// gets; this service owns the streams. Watches are served by the member the
/// client is connected to, from its applied state, as in etcd.
///
/// Ordering: every hub operation (create, cancel, publish, catch-up) runs on the
/// apply thread, and so does every send, so each stream receives its
/// responses in hub order.
///
/// Back-pressure: when a stream has more than `maxQueuedBytes` waiting for the
/// client, new events for its watchers are held back — the watcher is marked
/// slow from the first revision not sent — and replayed from history once the
/// stream drains (etcd's unsynced watchers).
public final class WatchService: Sendable {
    let node: NodeLoop<KVReplica>
    let clusterID: UInt64
    let maxQueuedBytes: Int
    /// Requests one call may have waiting on the apply thread (``WatchStream``).
    let maxPendingRequests: Int
    private let streams = Mutex<[WatchStreamID: GRPCServerStream]>([:])
    private let nextStream = Atomic<UInt64>(1)
    /// Since when this member has known no leader (nil: it knows one).
    private let leaderless = Mutex<ContinuousClock.Instant?>(nil)
    /// A catch-up round waits on the apply thread: the timer adds no other
    /// (rounds slower than the timer would otherwise pile up there).
    private let catchUpQueued = Atomic<Bool>(false)

    /// Installs the service as the node's watch delivery; call before serving.
    /// `progressInterval`: how often watchers that asked for progress
    /// notifications get one (etcd: 10 minutes).
    public init(
        node: NodeLoop<KVReplica>, clusterID: UInt64, maxQueuedBytes: Int = 4 << 20, maxPendingRequests: Int = 100_000,
        progressInterval: Duration = .seconds(600), on eventLoop: any EventLoop
    ) {
        self.maxPendingRequests = maxPendingRequests
        self.node = node
        self.clusterID = clusterID
        self.maxQueuedBytes = maxQueuedBytes
        node.perform { [weak self] replica in
            replica.onWatchDeliveries = { [weak self, unowned replica] deliveries in
                self?.deliver(deliveries, hub: replica.watches)
            }
        }
        // Slow watchers catch up every 100 ms; progress goes out on its own period.
        eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { [weak self] task in
            guard let self else { return task.cancel() }
            if !self.catchUpQueued.exchange(true, ordering: .relaxed) {
                self.node.perform(
                    { [weak self] replica in
                        self?.catchUpQueued.store(false, ordering: .relaxed)
                        self?.catchUp(replica)
                    }, refused: { [weak self] in self?.catchUpQueued.store(false, ordering: .relaxed) })
            }
            self.endStreamsWithoutLeader()
        }
        let interval = TimeAmount.nanoseconds(progressInterval.nanosecondsSaturated)
        eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] task in
            guard let self else { return task.cancel() }
            self.node.perform { [weak self] replica in
                self?.deliver(replica.watches.progress(revision: replica.machine.store.revision), hub: replica.watches)
            }
        }
    }

    public func register(on router: inout GRPCRouter) {
        router.streaming["/etcdserverpb.Watch/Watch"] = { [self] stream in open(stream) }
    }

    /// Watchers on this member (for metrics and tests); nil if it stopped.
    public func watcherCount() async -> Int? {
        await node.withMachine { $0.watches.count }
    }

    private func open(_ stream: GRPCServerStream) -> any GRPCStreamReceiver {
        // etcd's interceptor: a client that requires a leader is refused while
        // this member knows none (etcdctl watch and clientv3 ask for it).
        if stream.requiresLeader && node.status.leader == .none {
            return RefusedCall(stream, KVService.status(NodeError.noLeader))
        }
        let id = nextStream.add(1, ordering: .relaxed).oldValue
        streams.withLock { $0[id] = stream }
        return WatchStream(service: self, id: id, stream: stream)
    }

    /// etcd's monitorLeader: once this member has known no leader for three
    /// election timeouts, the streams whose clients require one end with
    /// "etcdserver: no leader", so they move to a member that has one
    /// instead of watching a state that no longer changes.
    private func endStreamsWithoutLeader() {
        let now = ContinuousClock.now
        let since: ContinuousClock.Instant? = leaderless.withLock { since in
            if node.status.leader != .none {
                since = nil
            } else if since == nil {
                since = now
            }
            return since
        }
        guard let since, now - since >= node.noLeaderWait * 3 / 2 else { return }
        let ending = streams.withLock { streams in
            let ending = streams.filter { $0.value.requiresLeader }
            for id in ending.keys { streams[id] = nil }
            return ending
        }
        for stream in ending.values { stream.finish(KVService.status(NodeError.noLeader)) }
    }

    func closed(_ id: WatchStreamID) {
        streams.withLock { $0[id] = nil }
        node.perform { replica in replica.watches.close(id) }
    }

    /// The storage an events array is in: equal for arrays that share it.
    /// (Compared only while the arrays are alive.)
    static func identity(of events: [KV.Event]) -> UInt {
        events.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
    }

    /// A stream's responses gathered in one delivery, and their estimated bytes.
    struct Gathered {
        let stream: GRPCServerStream
        var bytes = 0
        var messages: [@Sendable () -> [UInt8]?] = []
    }

    /// Adds a response to `batch` (one dictionary access for both); its bytes now.
    private static func add(_ make: @escaping @Sendable () -> [UInt8]?, _ bytes: Int, to batch: inout Gathered) -> Int {
        batch.messages.append(make)
        batch.bytes += bytes
        return batch.bytes
    }

    /// `events` as a WatchResponse's repeated events field, alone.
    static func encodedEvents(_ events: [KV.Event]) -> [UInt8]? {
        var only = Etcdserverpb_WatchResponse()
        only.events = events.map(Mvccpb_Event.init)
        return try? only.serializedBytes()
    }

    /// Sends hub output to the streams (on the loop thread).
    func deliver(_ deliveries: [WatchDelivery], hub: WatchHub) {
        guard !deliveries.isEmpty else { return }
        let status = node.status
        let header = HeaderSource(clusterID: clusterID, memberID: status.id, raftTerm: status.term)
        var refused: Set<WatchKey> = []
        // Watchers part-way through a fragmented revision: the rest of it goes
        // out whatever the queue holds (a replay from its first fragment would
        // repeat the ones sent; clientv3 would deliver their events twice).
        var fragmenting: Set<WatchKey> = []
        // Sent outside the lock: event loops take it to open and close watch
        // streams, and a large revision takes a while to encode. (A stream
        // closed meanwhile ignores what it is sent.)
        let streams = self.streams.withLock { $0 }
        // Watchers of one put that take all of it share its events array
        // (WatchHub.publish): those events are encoded once, here, and each
        // response is its own fields followed by them (protobuf parses
        // concatenated messages as one, appending repeated fields).
        var sharers: [UInt: Int] = [:]
        for delivery in deliveries where !delivery.response.events.isEmpty {
            sharers[Self.identity(of: delivery.response.events), default: 0] += 1
        }
        var sharedEvents: [UInt: [UInt8]] = [:]
        // A stream's event responses of this call go out together (one
        // outbox item, one DATA frame); a response without events flushes
        // what is gathered for its stream first, so order is kept.
        var gathered: [WatchStreamID: Gathered] = [:]
        func flush(_ id: WatchStreamID) {
            guard let batch = gathered.removeValue(forKey: id) else { return }
            batch.stream.send(estimatedBytes: batch.bytes, paced: true, batch.messages)
        }
        for delivery in deliveries {
            guard let stream = streams[delivery.stream] else { continue }
            let response = delivery.response
            // Events were admitted against `maxQueuedBytes` (fragments
            // continue an admitted revision): paced, never cut off.
            let paced = !response.events.isEmpty
            if let first = response.events.first {
                let key = WatchKey(stream: delivery.stream, id: response.watchID)
                // (The sets are empty but for slow streams and fragments: no hashing then.)
                if !refused.isEmpty, refused.contains(key) { continue }
                let queued = stream.queuedBytes + (gathered[delivery.stream]?.bytes ?? 0)
                if queued > maxQueuedBytes, fragmenting.isEmpty || !fragmenting.contains(key) {
                    refused.insert(key)
                    hub.markSlow(response.watchID, on: delivery.stream, from: first.kv.modRevision)
                    continue
                }
                if response.fragment {
                    fragmenting.insert(key)
                } else if !fragmenting.isEmpty {
                    fragmenting.remove(key)
                }
            }
            // Encoded on the stream's event loop unless large (then here,
            // as a large unary answer is encoded off its loop).
            // (A response without events: its fields, a cancel reason the largest.)
            let estimate = response.events.reduce(128 + response.cancelReason.utf8.count) { $0 + WatchHub.approximateBytes($1) }
            let make: @Sendable () -> [UInt8]?
            let id = response.events.isEmpty ? 0 : Self.identity(of: response.events)
            if id != 0, sharers[id, default: 0] > 1, let events = sharedEvents[id] ?? Self.encodedEvents(response.events) {
                sharedEvents[id] = events
                var fieldsOnly = response
                fieldsOnly.events = []
                let head = fieldsOnly
                make = {
                    guard let fields = try? Etcdserverpb_WatchResponse(head, header).serializedBytes() as [UInt8] else { return nil }
                    return fields + events
                }
            } else if estimate < GRPCServerHandler.offLoopBytes {
                make = { try? Etcdserverpb_WatchResponse(response, header).serializedBytes() as [UInt8] }
            } else {
                let bytes = try? Etcdserverpb_WatchResponse(response, header).serializedBytes() as [UInt8]
                make = { bytes }
            }
            if paced {
                let total = Self.add(make, estimate, to: &gathered[delivery.stream, default: Gathered(stream: stream)])
                // Not a whole huge fragmented revision in one buffer.
                if total >= GRPCServerHandler.offLoopBytes { flush(delivery.stream) }
            } else {
                flush(delivery.stream)
                stream.send(estimatedBytes: estimate, paced: false, [make])
            }
        }
        for id in Array(gathered.keys) { flush(id) }
    }

    /// Replays history to slow watchers, as much as each stream has room for
    /// below `maxQueuedBytes` (the bound live events are held to, so neither
    /// starves the other), then answers the progress requests that waited
    /// for them.
    private func catchUp(_ replica: KVReplica) {
        let hub = replica.watches
        // Every round, slow watchers or not: it also renews what creates may replay at once.
        let out = hub.catchUp(store: replica.machine.store, room: room(of:))
        if !out.isEmpty { deliver(out, hub: hub) }
        if hub.owesProgress { deliver(hub.settleProgress(revision: replica.machine.store.revision), hub: hub) }
    }

    /// Bytes stream `id` may still queue below `maxQueuedBytes` (0 if it is gone).
    private func room(of id: WatchStreamID) -> Int {
        streams.withLock { $0[id].map { maxQueuedBytes - $0.queuedBytes } ?? 0 }
    }

    /// A client's request on a stream. On the apply thread `begin` runs just
    /// before it is handled and `done` just after (only `done` if the member
    /// stopped first).
    func handle(
        _ request: Etcdserverpb_WatchRequest, on id: WatchStreamID,
        begin: @escaping @Sendable () -> Void = {}, done: @escaping @Sendable () -> Void
    ) {
        let job: @Sendable (KVReplica) -> Void
        switch request.requestUnion {
        case let .createRequest(create)?:
            let watch = WatchRequest(create)
            job = { [weak self] replica in
                guard let self else { return }
                let room = self.room(of: id)
                self.deliver(replica.watches.create(watch, on: id, store: replica.machine.store, room: room), hub: replica.watches)
            }
        case let .cancelRequest(cancel)?:
            job = { [weak self] replica in
                let revision = replica.machine.store.revision
                self?.deliver(replica.watches.cancel(cancel.watchID, on: id, revision: revision), hub: replica.watches)
            }
        case .progressRequest?:
            job = { [weak self] replica in
                let revision = replica.machine.store.revision
                self?.deliver(replica.watches.requestProgress(on: id, revision: revision), hub: replica.watches)
            }
        case nil:
            return done()
        }
        node.perform(
            { replica in
                begin()
                job(replica)
                done()
            }, refused: done)
    }
}

struct WatchKey: Hashable {
    var stream: WatchStreamID
    var id: Int64
}

/// One `Watch` call.
///
/// Requests wait on the apply thread; a client that sends more than
/// `maxPendingRequests` before they are handled is refused (etcd stops reading the
/// stream, which blocks such a client), and a progress request made right
/// after another that still waits is answered by that one.
final class WatchStream: GRPCStreamReceiver {
    let service: WatchService
    let id: WatchStreamID
    let stream: GRPCServerStream
    /// Counted here, on the event loop, and on the apply thread.
    private final class Pending: Sendable {
        let requests = Atomic<Int>(0)
        let progress = Atomic<Bool>(false)
    }
    private let pending = Pending()
    private var ended = false

    init(service: WatchService, id: WatchStreamID, stream: GRPCServerStream) {
        self.service = service
        self.id = id
        self.stream = stream
    }

    func received(_ message: [UInt8]) {
        guard !ended else { return }
        guard let request = try? Etcdserverpb_WatchRequest(serializedBytes: message) else {
            ended = true
            stream.finish(.invalidArgument("malformed WatchRequest"))
            return
        }
        let pending = self.pending
        let done: @Sendable () -> Void = { pending.requests.subtract(1, ordering: .relaxed) }
        var begin: @Sendable () -> Void = {}
        if case .progressRequest? = request.requestUnion {
            // A waiting progress request answers those made right after it:
            // it reads the revision after they all arrived.
            guard !pending.progress.exchange(true, ordering: .relaxed) else { return }
            begin = { pending.progress.store(false, ordering: .relaxed) }
        } else {
            // Not across a create or cancel: the answer must come after it.
            pending.progress.store(false, ordering: .relaxed)
        }
        guard pending.requests.add(1, ordering: .relaxed).newValue <= service.maxPendingRequests else {
            pending.requests.subtract(1, ordering: .relaxed)
            ended = true
            stream.finish(GRPCStatus(code: 8, message: "too many watch requests waiting"))
            return
        }
        service.handle(request, on: id, begin: begin, done: done)
    }

    /// etcd goes on streaming after the client half-closes (its receive loop
    /// ends, its send loop does not): a client may send its creates and
    /// half-close. The call ends when the client cancels it or goes away.
    func clientFinished() {}

    func closed() { service.closed(id) }
}

extension WatchRequest {
    /// etcd's normalisation (v3rpc/watch.go): an empty key means `\0`, and a
    /// range end of `\0` means every key from `key` on.
    init(_ p: Etcdserverpb_WatchCreateRequest) {
        let key = p.key.isEmpty ? [0] : p.key.byteArray
        self.init(key: key, rangeEnd: p.rangeEnd.byteArray, startRevision: p.startRevision)
        progressNotify = p.progressNotify
        filterPuts = p.filters.contains(.noput)
        filterDeletes = p.filters.contains(.nodelete)
        prevKV = p.prevKv
        watchID = p.watchID
        fragment = p.fragment
    }
}

extension Etcdserverpb_WatchResponse {
    init(_ r: WatchResponse, _ headers: HeaderSource) {
        self.init()
        header = headers.header(revision: r.revision)
        watchID = r.watchID
        created = r.created
        canceled = r.canceled
        compactRevision = r.compactRevision
        cancelReason = r.cancelReason
        fragment = r.fragment
        events = r.events.map(Mvccpb_Event.init)
    }
}
