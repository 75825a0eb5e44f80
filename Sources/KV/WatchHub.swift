/// Every watcher on this member and what each has been sent. Pure: the apply
/// loop calls ``publish(_:revision:)`` after each applied command, and the
/// server sends the returned deliveries on the watch streams in order.
///
/// Guarantees (etcd's watch contract, and the robustness suite's checks): each
/// watcher receives the events of its range in revision order, without gaps or
/// duplicates, all events of one revision in one response (or one fragmented
/// batch), from its start revision on; a start below the compaction point is
/// cancelled with the compaction revision.
///
/// A synced watcher has been sent everything up to the last published
/// revision; its next revision is `max(next, published + 1)` (kept lazily, so
/// a write costs nothing for the watchers it does not touch). An unsynced
/// (slow) watcher's `next` is exact, at most the store's revision, and it
/// catches up from history.
///
/// A write finds the watchers it touches through indexes: single-key
/// watchers by key, range and prefix watchers by range (each distinct range
/// checked once however many watch it), not by visiting every watcher.
public final class WatchHub {
    struct Watcher {
        let id: Int64
        let stream: WatchStreamID
        let range: KeyRange
        let request: WatchRequest
        /// The next revision this watcher must be sent (for a synced watcher,
        /// at least this: see the type's notes).
        var next: Int64
    }

    /// Events per response before a batch is split (etcd's watchBatchMaxRevs
    /// bounds revisions).
    public var maxEventsPerResponse = 1_000
    /// Bytes per response before a batch is split (etcd fragments at its
    /// request size limit, 1.5 MiB by default): a catch-up of many large
    /// revisions goes out in several responses a client can receive.
    public var maxBytesPerResponse = 3 << 19
    private var watchers: [WatchStreamID: [Int64: Watcher]] = [:]
    private var nextID: [WatchStreamID: Int64] = [:]
    /// Watchers asking for progress notifications that were sent events
    /// since the last round: the next round skips them (etcd 3.4's
    /// `sws.progress` flags), since their events already told the revision.
    private var heardSinceProgress: Set<Key> = []
    /// Watchers cancelled by compaction: their ids stay taken until the
    /// client cancels them, as etcd's do (clientv3 sends that cancel, and it
    /// must not reach a new watcher given the same id meanwhile).
    private var compactedIDs: [WatchStreamID: Set<Int64>] = [:]
    /// Streams whose progress request waits for their watchers to be synced
    /// (etcd 3.4.25's deferred progress): answered by ``settleProgress(revision:)``.
    private var owedProgress: Set<WatchStreamID> = []
    /// Single-key watchers by key, and the others by range.
    private var byKey: [[UInt8]: Set<Key>] = [:]
    private var byRange: [KeyRange: Set<Key>] = [:]
    /// The distinct ranges of `byRange`, found by a key they contain.
    private var rangeIndex = KeyRangeIndex()
    /// The last revision ``publish(_:revision:)`` sent to synced watchers.
    private var published: Int64 = 0
    public private(set) var count = 0
    /// Watchers that fell behind and must catch up from history, by stream and id.
    private var unsynced: Set<Key> = []
    /// Events of history one catch-up round (or one create's replay) reads at most.
    public static let catchUpBudget = 10_000
    /// Watchers one catch-up round visits at most.
    public var maxWatchersPerCatchUp = 512
    /// Bytes of history one watcher is sent per catch-up at most (about what a
    /// stream queues before it counts as slow): values are read back from
    /// files only for what can go out.
    public var catchUpBytesPerWatcher = 4 << 20
    /// Bytes of history one catch-up round, and the creates' replays between
    /// two rounds, send at most: with large values the event budget never
    /// binds, and 512 watchers × 4 MiB read back and encoded on the apply
    /// thread would stall it for seconds (review finding).
    public var catchUpBytesPerRound = 32 << 20
    /// The watcher the last catch-up round stopped at: the next starts after it.
    private var catchUpCursor: Key?
    /// Events creates may still replay at once before the next catch-up round.
    private var createBudget = catchUpBudget
    /// Bytes creates may still replay before the next catch-up round.
    private var createBytes: Int?

    struct Key: Hashable { var stream: WatchStreamID; var id: Int64 }

    public init() {}


    /// Creates a watcher: the `created` response, then — for a start in the
    /// past — the history since then. A start below the compaction point is
    /// answered with a cancellation carrying the compaction revision.
    ///
    /// The replay's first part goes out at once if the stream has `room`
    /// (bytes) for it and the creates since the last catch-up round have not
    /// used up one round's budget between them; otherwise the watcher waits
    /// for the next round, as etcd's unsynced watchers do. So a burst of
    /// creates from the past costs the apply thread a round's work, not one
    /// per create.
    public func create(
        _ request: WatchRequest, on stream: WatchStreamID, store: MVCCStore, room: Int = .max
    ) -> [WatchDelivery] {
        let current = store.revision
        // A create that fails is answered with id -1, as etcd's (clientv3
        // routes responses by id: a real one would cancel a live watcher);
        // the range is checked before an id is assigned.
        func refused(_ reason: String) -> [WatchDelivery] {
            var response = WatchResponse(watchID: WatchResponse.streamWideID, revision: current)
            response.created = true
            response.canceled = true
            response.cancelReason = reason
            return [WatchDelivery(stream: stream, response: response)]
        }
        // A start below zero is a client's bug: etcd refuses it as
        // compacted rather than watch from now (and before it looks at the range).
        if request.startRevision < 0 {
            return refused("etcdserver: mvcc: required revision has been compacted")
        }
        let range = KeyRange(key: request.key, rangeEnd: request.rangeEnd)
        if let end = range.end, ByteKeyTree<Int>.compare(end, range.start) <= 0 {
            return refused("mvcc: watcher range is empty")
        }
        var ids = watchers[stream, default: [:]]
        let retired = compactedIDs[stream, default: []]
        var id = request.watchID
        if id == 0 {
            id = nextID[stream, default: 0]
            while ids[id] != nil || retired.contains(id) { id += 1 }
            nextID[stream] = id + 1
        } else if ids[id] != nil || retired.contains(id) {
            return refused("mvcc: duplicate watch ID provided on the WatchStream")
        }
        var created = WatchResponse(watchID: id, revision: current)
        created.created = true
        let start = request.startRevision > 0 ? request.startRevision : current + 1
        if start < store.compactedRevision {
            // A second response, not a created one: clients match each created
            // response to a pending create (etcd's clientv3 panics otherwise).
            var canceled = created
            canceled.created = false
            canceled.canceled = true
            canceled.compactRevision = store.compactedRevision
            compactedIDs[stream, default: []].insert(id)
            return [WatchDelivery(stream: stream, response: created), WatchDelivery(stream: stream, response: canceled)]
        }
        let watcher = Watcher(id: id, stream: stream, range: range, request: request, next: start)
        ids[id] = watcher
        watchers[stream] = ids
        index(watcher)
        // The replay goes out a budget at a time: what does not fit now
        // follows with the slow watchers' catch-ups.
        let out = [WatchDelivery(stream: stream, response: created)]
        let key = Key(stream: stream, id: id)
        guard start <= store.revision else { return out }
        let bytesLeft = createBytes ?? catchUpBytesPerRound
        guard room > 0, createBudget > 0, bytesLeft > 0 else {
            unsynced.insert(key)
            return out
        }
        let (replayed, located) = catchUp(
            key, store: store, budget: createBudget, maxBytes: min(room, catchUpBytesPerWatcher, bytesLeft))
        createBudget -= max(located, 1)
        createBytes = bytesLeft - Self.approximateBytes(replayed)
        return out + replayed
    }

    /// Cancels a watcher at the client's request (also one already cancelled
    /// by compaction, whose id is then free again); an unknown id gets no
    /// answer, as in etcd.
    public func cancel(_ id: Int64, on stream: WatchStreamID, revision: Int64) -> [WatchDelivery] {
        if let watcher = watchers[stream]?.removeValue(forKey: id) {
            unindex(watcher)
            unsynced.remove(Key(stream: stream, id: id))
        } else if compactedIDs[stream]?.remove(id) == nil {
            return []
        }
        var response = WatchResponse(watchID: id, revision: revision)
        response.canceled = true
        return [WatchDelivery(stream: stream, response: response)]
    }

    /// The stream closed: forget its watchers.
    public func close(_ stream: WatchStreamID) {
        for watcher in watchers[stream]?.values ?? [:].values {
            unsynced.remove(Key(stream: stream, id: watcher.id))
            unindex(watcher)
        }
        watchers[stream] = nil
        nextID[stream] = nil
        compactedIDs[stream] = nil
        owedProgress.remove(stream)
    }

    private func index(_ watcher: Watcher) {
        let key = Key(stream: watcher.stream, id: watcher.id)
        if watcher.range.isSingleKey {
            byKey[watcher.range.start, default: []].insert(key)
        } else {
            if byRange[watcher.range, default: []].insert(key).inserted, byRange[watcher.range]?.count == 1 {
                rangeIndex.insert(watcher.range)
            }
        }
        count += 1
    }

    private func unindex(_ watcher: Watcher) {
        let key = Key(stream: watcher.stream, id: watcher.id)
        if watcher.range.isSingleKey {
            byKey[watcher.range.start]?.remove(key)
            if byKey[watcher.range.start]?.isEmpty == true { byKey[watcher.range.start] = nil }
        } else {
            byRange[watcher.range]?.remove(key)
            if byRange[watcher.range]?.isEmpty == true {
                byRange[watcher.range] = nil
                rangeIndex.remove(watcher.range)
            }
        }
        count -= 1
    }

    /// Where a watcher resumes: exact when unsynced, else after the last
    /// revision published (or its start, if that is later).
    private func next(of watcher: Watcher) -> Int64 {
        unsynced.contains(Key(stream: watcher.stream, id: watcher.id)) ? watcher.next : max(watcher.next, published + 1)
    }

    /// The changes of revision `revision` (all events of one applied command),
    /// for every synced watcher whose range they touch.
    public func publish(_ events: [Event], revision: Int64) -> [WatchDelivery] {
        defer { published = revision }
        guard count > 0 else { return [] }
        var touched: Set<Key> = []
        for event in events {
            if let keys = byKey[event.kv.key] {
                // The first set is shared, not copied (one put, many watchers of its key).
                if touched.isEmpty { touched = keys } else { touched.formUnion(keys) }
            }
            rangeIndex.forEach(containing: event.kv.key) { range in
                if let keys = byRange[range] {
                    if touched.isEmpty { touched = keys } else { touched.formUnion(keys) }
                }
            }
        }
        guard !touched.isEmpty else { return [] }
        var out: [WatchDelivery] = []
        // Watchers that take every event get the same array (with or without
        // previous states, each made once), so the service encodes the events
        // once for all of them (a put watched by many).
        var bare: [Event]?
        // In no particular order: each watcher's responses are in order, and
        // watchers do not depend on one another.
        for key in touched where unsynced.isEmpty || !unsynced.contains(key) {
            // A start still ahead: nothing yet.
            guard let watcher = watchers[key.stream]?[key.id], watcher.next <= revision else { continue }
            var mine: [Event]
            if events.allSatisfy({ wanted($0, by: watcher) }) {
                if watcher.request.prevKV {
                    mine = events
                } else {
                    if bare == nil { bare = events.map(Self.withoutPrevious) }
                    mine = bare ?? []
                }
            } else {
                mine = events.filter { wanted($0, by: watcher) }
                if !watcher.request.prevKV { mine = mine.map(Self.withoutPrevious) }
            }
            if !mine.isEmpty { out += responses(for: watcher, events: mine, revision: revision) }
        }
        return out
    }

    /// The transport could not keep up with this watcher: stop sending it live
    /// events; ``catchUp(store:budget:ready:)`` replays what it missed from
    /// history. `revision`: the first revision of a response that was not sent
    /// after all (the watcher resumes there); nil when nothing was dropped.
    public func markSlow(_ id: Int64, on stream: WatchStreamID, from revision: Int64? = nil) {
        guard var watcher = watchers[stream]?[id] else { return }
        watcher.next = min(next(of: watcher), revision ?? .max)
        watchers[stream]?[id] = watcher
        unsynced.insert(Key(stream: stream, id: id))
    }

    /// Whether any watcher waits to catch up.
    public var hasSlowWatchers: Bool { !unsynced.isEmpty }

    /// The store was replaced (a snapshot was installed): every watcher catches
    /// up from history instead of expecting live events.
    public func resyncAll() {
        for (stream, ids) in watchers {
            for var watcher in ids.values {
                watcher.next = next(of: watcher)
                watchers[stream]?[watcher.id] = watcher
                unsynced.insert(Key(stream: stream, id: watcher.id))
            }
        }
    }

    /// Replays history to slow watchers, about `budget` events in all, and
    /// to each stream about the bytes `room` says it can take now (0: none;
    /// a revision is never split, so one larger than the room comes whole).
    /// Each round starts after the watcher the last one stopped at, gives each
    /// watcher a share of the budget and visits at most
    /// ``maxWatchersPerCatchUp`` of them (etcd: 512 watchers and 1,000
    /// revisions each per round), so one big backlog does not starve the
    /// others; no more history is read than the streams can take.
    public func catchUp(
        store: MVCCStore, budget: Int = catchUpBudget, room: (WatchStreamID) -> Int = { _ in .max }
    ) -> [WatchDelivery] {
        createBudget = Self.catchUpBudget
        createBytes = nil
        guard !unsynced.isEmpty else { return [] }
        let order = unsynced.sorted { ($0.stream, $0.id) < ($1.stream, $1.id) }
        let start = catchUpCursor.flatMap { cursor in
            order.firstIndex { ($0.stream, $0.id) > (cursor.stream, cursor.id) }
        } ?? 0
        let share = max(budget / max(min(order.count, maxWatchersPerCatchUp), 1), maxEventsPerResponse)
        var out: [WatchDelivery] = []
        var left = budget
        var bytesLeft = catchUpBytesPerRound
        var visited = 0
        var rooms: [WatchStreamID: Int] = [:]
        for key in order[start...] + order[..<start] {
            guard left > 0, bytesLeft > 0, visited < maxWatchersPerCatchUp else { break }
            let room = rooms[key.stream] ?? room(key.stream)
            // Kept when full too: a stream that takes nothing is asked once
            // per round, not once per watcher.
            rooms[key.stream] = room
            guard room > 0 else { continue }
            visited += 1
            catchUpCursor = key
            let (delivered, located) = catchUp(
                key, store: store, budget: min(share, left), maxBytes: min(room, catchUpBytesPerWatcher, bytesLeft))
            let sent = Self.approximateBytes(delivered)
            rooms[key.stream] = room - sent
            bytesLeft -= sent
            // Every visit costs: a watcher whose filters drop every event
            // still had its history read.
            left -= max(located, 1)
            out += delivered
        }
        return out
    }

    /// Replays at most about `budget` events of history to one watcher; also
    /// returns how many changes were read for it.
    private func catchUp(_ key: Key, store: MVCCStore, budget: Int, maxBytes: Int) -> ([WatchDelivery], Int) {
        guard var watcher = watchers[key.stream]?[key.id] else { return ([], 0) }
        let current = store.revision
        // A start in the future: nothing to replay; live publishing takes over.
        if watcher.next > current {
            unsynced.remove(key)
            return ([], 0)
        }
        if watcher.next < store.compactedRevision {
            // History it needs is gone: cancel, telling the client where to resume.
            watchers[key.stream]?[key.id] = nil
            unindex(watcher)
            unsynced.remove(key)
            compactedIDs[key.stream, default: []].insert(key.id)
            var response = WatchResponse(watchID: watcher.id, revision: current)
            response.canceled = true
            // No reason, as etcd's: clients read the compaction from the revision.
            response.compactRevision = store.compactedRevision
            return ([WatchDelivery(stream: key.stream, response: response)], 0)
        }
        // Whole revisions only: a revision is never split across catch-ups.
        let (located, through) = store.events(
            in: watcher.range, from: watcher.next, through: current, limit: budget, maxBytes: maxBytes,
            previous: watcher.request.prevKV)
        let events = located.filter { wanted($0, by: watcher) }
        watcher.next = through + 1
        watchers[key.stream]?[key.id] = watcher
        if through == current { unsynced.remove(key) } else { unsynced.insert(key) }
        guard !events.isEmpty else { return ([], located.count) }
        return (responses(for: watcher, events: events.map { strip($0, for: watcher) }, revision: current), located.count)
    }

    /// Progress notifications: an empty response with the current revision to
    /// each synced watcher that asked for them (etcd sends these every 10 min).
    /// A watcher whose start is still ahead gets none: clients resume after a
    /// notification's revision, which would be before the start they chose
    /// (etcd 3.4.38's fix). A watcher sent events since the last round is
    /// skipped once, as etcd skips it.
    public func progress(revision: Int64) -> [WatchDelivery] {
        var out: [WatchDelivery] = []
        let heard = heardSinceProgress
        heardSinceProgress = []
        for stream in watchers.keys.sorted() {
            for (id, watcher) in (watchers[stream] ?? [:]).sorted(by: { $0.key < $1.key })
            where watcher.request.progressNotify && !unsynced.contains(Key(stream: stream, id: id))
                && !heard.contains(Key(stream: stream, id: id)) && watcher.next <= revision + 1 {
                out.append(WatchDelivery(stream: stream, response: WatchResponse(watchID: id, revision: revision)))
            }
        }
        return out
    }

    /// A client's progress request: one stream-wide response once every
    /// watcher on the stream is synced (before, its revision could run ahead
    /// of events not yet sent) and none starts in the future (clients give a
    /// stream-wide response to every watcher on the stream). Until then it
    /// is owed, as etcd 3.4.25 defers it, and ``settleProgress(revision:)``
    /// answers it; requests made meanwhile share that answer.
    public func requestProgress(on stream: WatchStreamID, revision: Int64) -> [WatchDelivery] {
        guard isSynced(stream, revision: revision) else {
            owedProgress.insert(stream)
            return []
        }
        owedProgress.remove(stream)
        return [WatchDelivery(stream: stream, response: WatchResponse(watchID: WatchResponse.streamWideID, revision: revision))]
    }

    /// Whether a progress request waits for a stream's watchers to be synced.
    public var owesProgress: Bool { !owedProgress.isEmpty }

    /// Answers the owed progress requests of streams whose watchers are all
    /// synced now. Call after what was last delivered has been sent or
    /// marked slow: the answer says every event up to `revision` went out.
    public func settleProgress(revision: Int64) -> [WatchDelivery] {
        var out: [WatchDelivery] = []
        for stream in owedProgress.sorted() where isSynced(stream, revision: revision) {
            owedProgress.remove(stream)
            out.append(WatchDelivery(stream: stream, response: WatchResponse(watchID: WatchResponse.streamWideID, revision: revision)))
        }
        return out
    }

    private func isSynced(_ stream: WatchStreamID, revision: Int64) -> Bool {
        !(watchers[stream] ?? [:]).contains { id, watcher in
            unsynced.contains(Key(stream: stream, id: id)) || watcher.next > revision + 1
        }
    }

    private func wanted(_ event: Event, by watcher: Watcher) -> Bool {
        switch event.kind {
        case .put where watcher.request.filterPuts: return false
        case .delete where watcher.request.filterDeletes: return false
        default: return watcher.range.contains(event.kv.key)
        }
    }

    private func strip(_ event: Event, for watcher: Watcher) -> Event {
        watcher.request.prevKV ? event : Self.withoutPrevious(event)
    }

    private static func withoutPrevious(_ event: Event) -> Event {
        guard event.previous != nil else { return event }
        var event = event
        event.previous = nil
        return event
    }

    /// Splits events into responses: whole revisions per response, up to
    /// `maxEventsPerResponse` events and `maxBytesPerResponse` bytes (a
    /// revision bigger than either goes alone). A single revision beyond them
    /// is fragmented when the client allows it (by both bounds, as etcd
    /// splits by size), else sent whole.
    private func responses(for watcher: Watcher, events: [Event], revision: Int64) -> [WatchDelivery] {
        if watcher.request.progressNotify { heardSinceProgress.insert(Key(stream: watcher.stream, id: watcher.id)) }
        // All in one response (the usual case): the array itself, not a copy.
        // So too one revision past the bounds for a watcher that does not
        // take fragments: it goes whole either way.
        let oneRevision = !watcher.request.fragment && events.first?.kv.modRevision == events.last?.kv.modRevision
        if !events.isEmpty, oneRevision
            || (events.count <= maxEventsPerResponse && events.reduce(0, { $0 + Self.approximateBytes($1) }) <= maxBytesPerResponse)
        {
            var response = WatchResponse(watchID: watcher.id, revision: revision)
            response.events = events
            return [WatchDelivery(stream: watcher.stream, response: response)]
        }
        var out: [WatchDelivery] = []
        var batch: [Event] = []
        var batchBytes = 0
        func flush(fragment: Bool) {
            guard !batch.isEmpty else { return }
            var response = WatchResponse(watchID: watcher.id, revision: revision)
            response.events = batch
            response.fragment = fragment
            out.append(WatchDelivery(stream: watcher.stream, response: response))
            batch = []
            batchBytes = 0
        }
        var index = 0
        while index < events.count {
            // One revision's events.
            let rev = events[index].kv.modRevision
            var end = index
            var groupBytes = 0
            while end < events.count, events[end].kv.modRevision == rev {
                groupBytes += Self.approximateBytes(events[end])
                end += 1
            }
            let group = events[index..<end]
            if batch.count + group.count > maxEventsPerResponse || batchBytes + groupBytes > maxBytesPerResponse {
                flush(fragment: false)
            }
            if watcher.request.fragment && (group.count > maxEventsPerResponse || groupBytes > maxBytesPerResponse) {
                for event in group {
                    let bytes = Self.approximateBytes(event)
                    if !batch.isEmpty && (batch.count == maxEventsPerResponse || batchBytes + bytes > maxBytesPerResponse) {
                        flush(fragment: true)
                    }
                    batch.append(event)
                    batchBytes += bytes
                }
                flush(fragment: false)
            } else {
                batch += group
                batchBytes += groupBytes
            }
            index = end
        }
        flush(fragment: false)
        return out
    }

    /// About what an event takes in a response: its keys and values, plus a
    /// fixed share for revisions, versions and framing.
    /// The events' bytes in `deliveries`, as ``approximateBytes(_:)-(Event)`` counts them.
    static func approximateBytes(_ deliveries: [WatchDelivery]) -> Int {
        deliveries.reduce(0) { sum, d in sum + d.response.events.reduce(0) { $0 + approximateBytes($1) } }
    }

    public static func approximateBytes(_ event: Event) -> Int {
        var bytes = 48 + event.kv.key.count + event.kv.value.count
        if let previous = event.previous { bytes += 32 + previous.key.count + previous.value.count }
        return bytes
    }
}
