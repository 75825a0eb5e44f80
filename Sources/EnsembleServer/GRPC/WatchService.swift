import EnsembleClient
import EnsembleAPI
import Foundation
import KV
import NIOCore
import SwiftProtobuf
import Synchronization

/// etcd's Watch service: one bidirectional stream per `Watch` call, carrying
/// any number of watchers. The member's ``WatchHub`` decides what each watcher
/// gets; this service owns the streams. Watches are served by the member the
/// client is connected to, from its applied state, as in etcd.
///
/// Ordering: every hub operation (create, cancel, publish, catch-up) runs on the
/// node loop's thread, and so does every send, so each stream receives its
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
    private let streams = Mutex<[WatchStreamID: GRPCServerStream]>([:])
    private let nextStream = Atomic<UInt64>(1)

    /// Installs the service as the node's watch delivery; call before serving.
    /// `progressInterval`: how often watchers that asked for progress
    /// notifications get one (etcd: 10 minutes).
    public init(
        node: NodeLoop<KVReplica>, clusterID: UInt64, maxQueuedBytes: Int = 4 << 20,
        progressInterval: Duration = .seconds(600), on eventLoop: any EventLoop
    ) {
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
            self.node.perform { [weak self] replica in self?.catchUp(replica) }
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
        let id = nextStream.add(1, ordering: .relaxed).oldValue
        streams.withLock { $0[id] = stream }
        return WatchStream(service: self, id: id, stream: stream)
    }

    func closed(_ id: WatchStreamID) {
        streams.withLock { $0[id] = nil }
        node.perform { replica in replica.watches.close(id) }
    }

    /// Sends hub output to the streams (on the loop thread).
    func deliver(_ deliveries: [WatchDelivery], hub: WatchHub) {
        guard !deliveries.isEmpty else { return }
        let status = node.status
        let header = HeaderSource(clusterID: clusterID, memberID: status.id, raftTerm: status.term)
        var refused: Set<WatchKey> = []
        streams.withLock { streams in
            for delivery in deliveries {
                guard let stream = streams[delivery.stream] else { continue }
                let response = delivery.response
                if let first = response.events.first {
                    let key = WatchKey(stream: delivery.stream, id: response.watchID)
                    if refused.contains(key) { continue }
                    if stream.queuedBytes > maxQueuedBytes {
                        refused.insert(key)
                        hub.markSlow(response.watchID, on: delivery.stream, from: first.kv.modRevision)
                        continue
                    }
                }
                if let bytes = try? Etcdserverpb_WatchResponse(response, header).serializedBytes() as [UInt8] {
                    stream.send(bytes)
                }
            }
        }
    }

    private func catchUp(_ replica: KVReplica) {
        guard replica.watches.hasSlowWatchers else { return }
        let ready = streams.withLock { streams in
            Set(streams.filter { $0.value.queuedBytes <= maxQueuedBytes / 2 }.keys)
        }
        deliver(replica.watches.catchUp(store: replica.machine.store, ready: { ready.contains($0) }), hub: replica.watches)
    }

    /// A client's request on a stream.
    func handle(_ request: Etcdserverpb_WatchRequest, on id: WatchStreamID) {
        switch request.requestUnion {
        case let .createRequest(create)?:
            let watch = WatchRequest(create)
            node.perform { [weak self] replica in
                self?.deliver(replica.watches.create(watch, on: id, store: replica.machine.store), hub: replica.watches)
            }
        case let .cancelRequest(cancel)?:
            node.perform { [weak self] replica in
                let revision = replica.machine.store.revision
                self?.deliver(replica.watches.cancel(cancel.watchID, on: id, revision: revision), hub: replica.watches)
            }
        case .progressRequest?:
            node.perform { [weak self] replica in
                let revision = replica.machine.store.revision
                self?.deliver(replica.watches.requestProgress(on: id, revision: revision), hub: replica.watches)
            }
        case nil:
            break
        }
    }
}

struct WatchKey: Hashable {
    var stream: WatchStreamID
    var id: Int64
}

/// One `Watch` call.
final class WatchStream: GRPCStreamReceiver {
    let service: WatchService
    let id: WatchStreamID
    let stream: GRPCServerStream

    init(service: WatchService, id: WatchStreamID, stream: GRPCServerStream) {
        self.service = service
        self.id = id
        self.stream = stream
    }

    func received(_ message: [UInt8]) {
        do {
            service.handle(try Etcdserverpb_WatchRequest(serializedBytes: message), on: id)
        } catch {
            stream.finish(.invalidArgument("malformed WatchRequest"))
        }
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
