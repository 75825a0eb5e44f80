@testable import KV
import Raft
import Testing

/// Applies commands and feeds the hub, as the server's apply loop will.
final class WatchBench {
    let kv = KVStateMachine()
    let hub = WatchHub()
    var received: [WatchStreamID: [Int64: [WatchResponse]]] = [:]
    /// Every event ever applied, in order (the ground truth).
    var history: [Event] = []

    func apply(_ command: KVStateMachine.Command) {
        let (_, events) = kv.apply(command)
        history += events
        if !events.isEmpty { deliver(hub.publish(events, revision: kv.store.revision)) }
    }

    /// Applies, then refuses some watchers' deliveries as a congested stream
    /// would, marking them slow from the refused revision (what WatchService does).
    func apply(_ command: KVStateMachine.Command, dropping rng: inout SeededRandom) {
        let (_, events) = kv.apply(command)
        history += events
        guard !events.isEmpty else { return }
        var refused: Set<[Int64]> = []
        for d in hub.publish(events, revision: kv.store.revision) {
            let key = [Int64(d.stream), d.response.watchID]
            if refused.contains(key) { continue }
            if let first = d.response.events.first, Bool.random(using: &rng) {
                refused.insert(key)
                hub.markSlow(d.response.watchID, on: d.stream, from: first.kv.modRevision)
                continue
            }
            deliver([d])
        }
    }

    func deliver(_ deliveries: [WatchDelivery]) {
        for d in deliveries { received[d.stream, default: [:]][d.response.watchID, default: []].append(d.response) }
    }

    func watch(_ request: WatchRequest, stream: WatchStreamID = 1) -> Int64? {
        let out = hub.create(request, on: stream, store: kv.store)
        deliver(out)
        return out.first?.response.watchID
    }

    func events(_ stream: WatchStreamID, _ id: Int64) -> [Event] {
        (received[stream]?[id] ?? []).flatMap(\.events)
    }
}

@Suite struct WatchTests {
    @Test func liveEventsForARange() throws {
        let bench = WatchBench()
        let id = try #require(bench.watch(WatchRequest(key: b("a"), rangeEnd: b("b"))))
        #expect(bench.received[1]?[id]?.first?.created == true)
        bench.apply(.put(PutRequest(key: b("a1"), value: b("x"))))
        bench.apply(.put(PutRequest(key: b("zz"), value: b("x"))))
        bench.apply(.deleteRange(DeleteRangeRequest(key: b("a1"))))
        #expect(bench.events(1, id).map(\.kind) == [.put, .delete])
        #expect(bench.events(1, id).map(\.kv.modRevision) == [2, 4])
        #expect(bench.events(1, id).allSatisfy { $0.previous == nil }, "prev_kv only on request")
    }

    @Test func replayFromThePastThenLive() throws {
        let bench = WatchBench()
        for i in 0..<5 { bench.apply(.put(PutRequest(key: b("k"), value: b("v\(i)")))) }
        var request = WatchRequest(key: b("k"), startRevision: 3)
        request.prevKV = true
        let id = try #require(bench.watch(request))
        bench.apply(.put(PutRequest(key: b("k"), value: b("v5"))))
        let events = bench.events(1, id)
        #expect(events.map(\.kv.modRevision) == [3, 4, 5, 6, 7])
        #expect(events.first?.previous?.value == b("v0"))
    }

    @Test func aTransactionArrivesInOneResponse() throws {
        let bench = WatchBench()
        let id = try #require(bench.watch(WatchRequest(key: [0], rangeEnd: [0])))
        bench.apply(.txn(TxnRequest(success: [
            .put(PutRequest(key: b("x"), value: b("1"))), .put(PutRequest(key: b("y"), value: b("2"))),
        ])))
        let responses = bench.received[1]?[id]?.filter { !$0.events.isEmpty } ?? []
        #expect(responses.count == 1 && responses.first?.events.count == 2)
    }

    @Test func compactedStartIsCanceledWithTheCompactionRevision() throws {
        let bench = WatchBench()
        for i in 0..<5 { bench.apply(.put(PutRequest(key: b("k"), value: b("v\(i)")))) }
        bench.apply(.compact(revision: 4))
        let out = bench.hub.create(WatchRequest(key: b("k"), startRevision: 2), on: 1, store: bench.kv.store)
        #expect(out.count == 2)
        #expect(out[1].response.canceled && out[1].response.compactRevision == 4)
        #expect(!out[1].response.created, "only the first response answers the create")
        #expect(out[1].response.cancelReason == "", "etcd gives no reason: clients read compact_revision")
        // Starting exactly at the compaction revision is complete, deletes included.
        bench.apply(.deleteRange(DeleteRangeRequest(key: b("k"))))  // 7
        bench.apply(.compact(revision: 7))
        let fromCompaction = bench.hub.create(WatchRequest(key: b("k"), startRevision: 7), on: 2, store: bench.kv.store)
        #expect(fromCompaction.flatMap(\.response.events).map(\.kind) == [.delete])
    }

    /// A watcher cancelled by compaction keeps its id until the client
    /// cancels it, as etcd's does: clientv3 sends that cancel, which must
    /// not reach a new watcher given the id meanwhile; it is answered.
    @Test func aCompactedWatchersIdStaysTakenUntilCancelled() throws {
        let bench = WatchBench()
        for i in 0..<5 { bench.apply(.put(PutRequest(key: b("k"), value: b("v\(i)")))) }
        bench.apply(.compact(revision: 4))
        var request = WatchRequest(key: b("k"), startRevision: 2)
        request.watchID = 7
        #expect(bench.hub.create(request, on: 1, store: bench.kv.store).last?.response.compactRevision == 4)
        request.startRevision = 0
        let again = bench.hub.create(request, on: 1, store: bench.kv.store)
        #expect(again.first?.response.watchID == -1 && again.first?.response.cancelReason.contains("duplicate") == true)
        let cancelled = bench.hub.cancel(7, on: 1, revision: bench.kv.store.revision)
        #expect(cancelled.first?.response.watchID == 7 && cancelled.first?.response.canceled == true)
        #expect(bench.hub.cancel(7, on: 1, revision: bench.kv.store.revision).isEmpty, "an unknown id is not answered")
        #expect(bench.hub.create(request, on: 1, store: bench.kv.store).first?.response.watchID == 7)

        // Server-assigned ids skip it too; a slow watcher compacted away keeps its id.
        request.watchID = 0
        _ = bench.hub.create(request, on: 2, store: bench.kv.store)  // id 0, which a request cannot name
        request.startRevision = 2
        let auto = try #require(bench.hub.create(request, on: 2, store: bench.kv.store).first?.response.watchID)
        #expect(auto == 1)
        request.watchID = auto
        request.startRevision = 0
        #expect(bench.hub.create(request, on: 2, store: bench.kv.store).first?.response.watchID == -1)
        bench.hub.close(2)
        #expect(bench.hub.create(request, on: 2, store: bench.kv.store).first?.response.watchID == auto, "a closed stream frees all")
    }

    @Test func filtersIdsAndCancel() throws {
        let bench = WatchBench()
        var noPuts = WatchRequest(key: b("k"))
        noPuts.filterPuts = true
        let a = try #require(bench.watch(noPuts))
        let second = try #require(bench.watch(WatchRequest(key: b("k"))))
        #expect(a == 0 && second == 1, "server-assigned ids count from 0 per stream")
        var chosen = WatchRequest(key: b("k"))
        chosen.watchID = 1
        let duplicate = bench.hub.create(chosen, on: 1, store: bench.kv.store)
        #expect(duplicate.first?.response.canceled == true)
        #expect(duplicate.first?.response.watchID == -1, "a failed create never names a live watcher (etcd: -1)")
        bench.apply(.put(PutRequest(key: b("k"), value: b("1"))))
        bench.apply(.deleteRange(DeleteRangeRequest(key: b("k"))))
        #expect(bench.events(1, a).map(\.kind) == [.delete])
        bench.deliver(bench.hub.cancel(second, on: 1, revision: bench.kv.store.revision))
        #expect(bench.received[1]?[second]?.last?.canceled == true)
        bench.apply(.put(PutRequest(key: b("k"), value: b("2"))))
        #expect(bench.events(1, second).count == 2, "nothing after cancel")
        let empty = bench.hub.create(WatchRequest(key: b("z"), rangeEnd: b("a")), on: 1, store: bench.kv.store)
        #expect(empty.first?.response.cancelReason == "mvcc: watcher range is empty")
        #expect(empty.first?.response.watchID == -1 && empty.first?.response.created == true)
        #expect(bench.watch(WatchRequest(key: b("k"))) == 2, "a refused create uses up no id")
        var negative = WatchRequest(key: b("k"))
        negative.startRevision = -5
        let refused = bench.hub.create(negative, on: 1, store: bench.kv.store)
        #expect(refused.count == 1 && refused.first?.response.watchID == -1 && refused.first?.response.canceled == true)
        #expect(refused.first?.response.cancelReason == "etcdserver: mvcc: required revision has been compacted")
    }

    @Test func bigBatchesAreFragmentedOnlyWhenAsked() throws {
        let bench = WatchBench()
        bench.hub.maxEventsPerResponse = 3
        var fragmented = WatchRequest(key: [0], rangeEnd: [0])
        fragmented.fragment = true
        let f = try #require(bench.watch(fragmented))
        let whole = try #require(bench.watch(WatchRequest(key: [0], rangeEnd: [0])))
        bench.apply(.txn(TxnRequest(success: (0..<7).map { .put(PutRequest(key: b("k\($0)"), value: [])) })))
        let pieces = (bench.received[1]?[f] ?? []).filter { !$0.events.isEmpty }
        #expect(pieces.map(\.events.count) == [3, 3, 1])
        #expect(pieces.map(\.fragment) == [true, true, false])
        #expect((bench.received[1]?[whole] ?? []).filter { !$0.events.isEmpty }.map(\.events.count) == [7])
    }

    /// Responses are bounded in bytes too: a catch-up over large revisions is
    /// split at revision boundaries, and one large revision is fragmented by
    /// size when the client allows it (etcd fragments by size).
    @Test func responsesAreBoundedInBytes() throws {
        let bench = WatchBench()
        bench.hub.maxBytesPerResponse = 1_000
        let value = [UInt8](repeating: 7, count: 400)
        for i in 0..<5 { bench.apply(.put(PutRequest(key: b("k\(i)"), value: value))) }
        let replayed = bench.hub.create(WatchRequest(key: [0], rangeEnd: [0], startRevision: 1), on: 1, store: bench.kv.store)
            .filter { !$0.response.events.isEmpty }
        #expect(replayed.map(\.response.events.count) == [2, 2, 1], "whole revisions, at most 1,000 bytes each")
        #expect(replayed.allSatisfy { !$0.response.fragment })

        var fragmented = WatchRequest(key: [0], rangeEnd: [0])
        fragmented.fragment = true
        let f = try #require(bench.watch(fragmented, stream: 2))
        let whole = try #require(bench.watch(WatchRequest(key: [0], rangeEnd: [0]), stream: 3))
        bench.apply(.txn(TxnRequest(success: (0..<5).map { .put(PutRequest(key: b("t\($0)"), value: value)) })))
        let pieces = (bench.received[2]?[f] ?? []).filter { !$0.events.isEmpty }
        #expect(pieces.map(\.events.count) == [2, 2, 1])
        #expect(pieces.map(\.fragment) == [true, true, false])
        #expect((bench.received[3]?[whole] ?? []).filter { !$0.events.isEmpty }.map(\.events.count) == [5], "not split unless asked")
    }

    /// A replay reads history only as far as a catch-up can send (values may
    /// have to be read back from files): the rest follows in later rounds.
    @Test func aReplayReadsOnlyWhatFits() throws {
        let bench = WatchBench()
        bench.hub.catchUpBytesPerWatcher = 1_000
        let value = [UInt8](repeating: 7, count: 400)
        for _ in 0..<5 { bench.apply(.put(PutRequest(key: b("k"), value: value))) }
        // With prev_kv each event carries two values: two fit in about 1,000
        // bytes; without, three (the previous states are not read at all).
        var withPrevious = WatchRequest(key: b("k"), startRevision: 2)
        withPrevious.prevKV = true
        let both = bench.hub.create(withPrevious, on: 2, store: bench.kv.store)
        #expect(both.flatMap(\.response.events).count == 2, "about 1,000 bytes, whole revisions")
        #expect(both.flatMap(\.response.events).dropFirst().allSatisfy { $0.previous != nil })
        let first = bench.hub.create(WatchRequest(key: b("k"), startRevision: 2), on: 1, store: bench.kv.store)
        #expect(first.flatMap(\.response.events).count == 3, "about 1,000 bytes, whole revisions")
        #expect(bench.hub.hasSlowWatchers)
        bench.deliver(first)
        var rounds = 0
        while bench.hub.hasSlowWatchers && rounds < 10 {
            bench.deliver(bench.hub.catchUp(store: bench.kv.store))
            rounds += 1
        }
        #expect(bench.events(1, 0).map(\.kv.modRevision) == [2, 3, 4, 5, 6])
    }

    /// Creates from the past replay at once only while the stream has room
    /// and the creates since the last round have not used up a round's
    /// budget; the rest wait for the next round and miss nothing.
    @Test func aBurstOfCreatesFromThePastSharesOneRoundsBudget() throws {
        let bench = WatchBench()
        for i in 0..<4_000 { bench.apply(.put(PutRequest(key: b("k\(i % 10)"), value: b("v")))) }
        var immediate: [Int] = []
        var ids: [Int64] = []
        for stream in 1...5 {
            let out = bench.hub.create(WatchRequest(key: b("k"), rangeEnd: b("l"), startRevision: 2), on: WatchStreamID(stream), store: bench.kv.store)
            immediate.append(out.flatMap(\.response.events).count)
            ids.append(try #require(out.first?.response.watchID))
            bench.deliver(out)
        }
        // 10,000 events between them: two whole backlogs, a part of the third, none after.
        #expect(immediate[0] == 4_000 && immediate[1] == 4_000 && immediate[2] > 0 && immediate[2] < 4_000, "\(immediate)")
        #expect(immediate[3] == 0 && immediate[4] == 0, "\(immediate)")
        // No room on the stream: nothing at once either.
        let full = bench.hub.create(WatchRequest(key: b("k"), rangeEnd: b("l"), startRevision: 2), on: 6, store: bench.kv.store, room: 0)
        #expect(full.flatMap(\.response.events).isEmpty)
        bench.deliver(full)
        var rounds = 0
        while bench.hub.hasSlowWatchers && rounds < 20 {
            bench.deliver(bench.hub.catchUp(store: bench.kv.store))
            rounds += 1
        }
        for stream in 1...6 {
            let id = stream <= 5 ? ids[stream - 1] : 0
            #expect(bench.events(WatchStreamID(stream), id).map(\.kv.modRevision) == Array(2...4_001), "stream \(stream)")
        }
    }

    /// A watcher with a long backlog cannot take every catch-up round: each
    /// watcher gets a share, and a round starts after the last one served.
    @Test func catchUpSharesItsBudgetAndRotates() throws {
        let bench = WatchBench()
        let big = try #require(bench.watch(WatchRequest(key: b("big")), stream: 1))
        let small = try #require(bench.watch(WatchRequest(key: b("small")), stream: 2))
        for i in 0..<3_000 { bench.apply(.put(PutRequest(key: b("big"), value: b("\(i)")))) }
        bench.apply(.put(PutRequest(key: b("small"), value: b("x"))))
        bench.received = [:]
        bench.hub.markSlow(big, on: 1, from: 2)
        bench.hub.markSlow(small, on: 2, from: 2)
        bench.hub.maxEventsPerResponse = 100
        bench.deliver(bench.hub.catchUp(store: bench.kv.store, budget: 1_000))
        #expect(bench.events(1, big).count == 500, "half the budget each")
        #expect(bench.events(2, small).count == 1)
        // With a budget one watcher exhausts, rounds take turns.
        bench.hub.markSlow(small, on: 2, from: 2)
        bench.deliver(bench.hub.catchUp(store: bench.kv.store, budget: 100))
        bench.deliver(bench.hub.catchUp(store: bench.kv.store, budget: 100))
        #expect(bench.events(2, small).count == 2, "served in one of two rounds")
        bench.deliver(bench.hub.catchUp(store: bench.kv.store, budget: .max))
        #expect(bench.events(1, big).map { String(decoding: $0.kv.value, as: UTF8.self) } == (0..<3_000).map { "\($0)" })
    }

    /// A catch-up round reads no more history for a stream than it has room
    /// for (review finding: 512 slow watchers on one stream each read up to
    /// their own bound, and all but the first few were refused again).
    @Test func catchUpReadsWhatTheStreamHasRoomFor() throws {
        let bench = WatchBench()
        let value = [UInt8](repeating: 7, count: 1_000)
        let ids = try (0..<4).map { i in try #require(bench.watch(WatchRequest(key: b("k\(i)")))) }
        for round in 0..<10 {
            for i in 0..<4 { bench.apply(.put(PutRequest(key: b("k\(i)"), value: value + [UInt8(round)]))) }
        }
        bench.received = [:]
        for id in ids { bench.hub.markSlow(id, on: 1, from: 2) }
        let out = bench.hub.catchUp(store: bench.kv.store, room: { _ in 2_500 })
        let sent = out.flatMap(\.response.events).reduce(0) { $0 + WatchHub.approximateBytes($1) }
        #expect(sent > 0 && sent < 2_500 + 1_200, "the room, and at most one revision past it")
        bench.deliver(out)
        #expect(bench.hub.catchUp(store: bench.kv.store, room: { _ in 0 }).isEmpty, "no room, nothing read")
        for _ in 0..<20 where bench.hub.hasSlowWatchers {
            bench.deliver(bench.hub.catchUp(store: bench.kv.store, room: { _ in 2_500 }))
        }
        for (i, id) in ids.enumerated() {
            #expect(bench.events(1, id).map(\.kv.modRevision) == (0..<10).map { Int64(2 + 4 * $0 + i) })
        }
    }

    /// A round sends at most ``WatchHub/catchUpBytesPerRound`` over all
    /// its watchers, and so do the creates between two rounds: with large
    /// values the event budget never binds, and the apply thread would read
    /// back and encode gigabytes in one go (review finding). Nothing is lost.
    @Test func aRoundAndTheCreatesBetweenRoundsAreBoundedInBytes() throws {
        let bench = WatchBench()
        bench.hub.catchUpBytesPerRound = 10_000
        let value = [UInt8](repeating: 7, count: 1_000)
        let ids = try (0..<8).map { i in try #require(bench.watch(WatchRequest(key: b("k\(i)")), stream: WatchStreamID(i + 1))) }
        for round in 0..<5 {
            for i in 0..<8 { bench.apply(.put(PutRequest(key: b("k\(i)"), value: value + [UInt8(round)]))) }
        }
        bench.received = [:]
        for (i, id) in ids.enumerated() { bench.hub.markSlow(id, on: WatchStreamID(i + 1), from: 2) }
        let out = bench.hub.catchUp(store: bench.kv.store)
        #expect(WatchHub.approximateBytes(out) < 10_000 + 1_200, "the round's bytes, and at most one revision past them")
        bench.deliver(out)
        // Creates from the past share the same bound until the next round.
        var replayed = 0
        for stream in 20..<30 {
            let created = bench.hub.create(WatchRequest(key: b("k"), rangeEnd: b("l"), startRevision: 2), on: WatchStreamID(stream), store: bench.kv.store)
            replayed += WatchHub.approximateBytes(created)
            bench.deliver(created)
        }
        #expect(replayed > 0 && replayed < 10_000 + 1_200, "\(replayed)")
        for _ in 0..<100 where bench.hub.hasSlowWatchers {
            bench.deliver(bench.hub.catchUp(store: bench.kv.store))
        }
        #expect(!bench.hub.hasSlowWatchers)
        for (i, id) in ids.enumerated() {
            #expect(bench.events(WatchStreamID(i + 1), id).map(\.kv.modRevision) == (0..<5).map { Int64(2 + 8 * $0 + i) })
        }
        for stream in 20..<30 {
            #expect(bench.events(WatchStreamID(stream), 0).map(\.kv.modRevision) == Array(2...41), "stream \(stream)")
        }
    }

    @Test func progressNotifications() throws {
        let bench = WatchBench()
        var request = WatchRequest(key: b("k"))
        request.progressNotify = true
        let id = try #require(bench.watch(request))
        let progress = bench.hub.progress(revision: 1)
        #expect(progress.map(\.response.watchID) == [id] && progress.first?.response.events.isEmpty == true)
        #expect(bench.hub.requestProgress(on: 1, revision: 1).first?.response.watchID == -1)
        bench.hub.markSlow(id, on: 1)
        #expect(bench.hub.requestProgress(on: 1, revision: 1).isEmpty, "not while a watcher lags")
        // Owed, not forgotten (review finding: it was never answered): it
        // goes out once the watcher has caught up, after what it was sent.
        #expect(bench.hub.owesProgress)
        #expect(bench.hub.settleProgress(revision: 1).isEmpty)
        bench.deliver(bench.hub.catchUp(store: bench.kv.store))
        #expect(bench.hub.settleProgress(revision: 1).map(\.response.watchID) == [-1])
        #expect(!bench.hub.owesProgress)
        bench.hub.markSlow(id, on: 1)
        _ = bench.hub.requestProgress(on: 1, revision: 1)
        bench.hub.close(1)
        #expect(!bench.hub.owesProgress, "a closed stream is owed nothing")

        // A start in the future: clients resume after a notification's
        // revision, so none goes out before the start (etcd 3.4.38).
        var ahead = WatchRequest(key: b("k"), startRevision: 10)
        ahead.progressNotify = true
        let future = try #require(bench.watch(ahead, stream: 2))
        #expect(bench.hub.progress(revision: 1).allSatisfy { $0.response.watchID != future || $0.stream != 2 })
        #expect(bench.hub.requestProgress(on: 2, revision: 1).isEmpty)
        #expect(bench.hub.progress(revision: 9).contains { $0.stream == 2 && $0.response.watchID == future })

        // A watcher sent events since the last round is skipped once (etcd's
        // sws.progress flags): its events told it the revision already.
        var quiet = WatchRequest(key: b("other"))
        quiet.progressNotify = true
        let silent = try #require(bench.watch(quiet, stream: 3))
        var busy = WatchRequest(key: b("k"))
        busy.progressNotify = true
        let heard = try #require(bench.watch(busy, stream: 4))
        bench.apply(.put(PutRequest(key: b("k"), value: b("v"))))
        let round = bench.hub.progress(revision: 2).filter { $0.stream >= 3 }.map { [Int64($0.stream), $0.response.watchID] }
        #expect(round == [[3, silent]], "\(round)")
        let next = bench.hub.progress(revision: 2).filter { $0.stream >= 3 }.map { [Int64($0.stream), $0.response.watchID] }
        #expect(next == [[3, silent], [4, heard]], "\(next)")
    }

    /// Random writes, compactions, slow watchers and catch-ups: every watcher gets
    /// exactly the history of its range from its start — in order, no gaps, no
    /// duplicates, each revision whole.
    @Test(arguments: 1...24)
    func everyWatcherSeesExactlyItsHistory(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let bench = WatchBench()
        let keys = (0..<6).map { b("k\($0)") }
        var watches: [(stream: WatchStreamID, id: Int64, request: WatchRequest, createdAt: Int64)] = []
        var canceledByCompaction: Set<Int64> = []
        var canceledByClient: Set<[Int64]> = []
        for step in 0..<300 {
            switch Int.random(in: 0..<12, using: &rng) {
            case 0...5:
                bench.apply(.put(PutRequest(key: keys[Int.random(in: 0..<6, using: &rng)], value: b("\(step)"))))
            case 6:
                bench.apply(.deleteRange(DeleteRangeRequest(key: b("k"), rangeEnd: b("k\(Int.random(in: 0...6, using: &rng))"))))
            case 7:
                bench.apply(.txn(TxnRequest(success: [.put(PutRequest(key: keys[0], value: b("t"))), .put(PutRequest(key: keys[5], value: b("t")))])))
            case 8:
                let store = bench.kv.store
                let low = max(store.compactedRevision - 2, 1)
                // Ranges, single keys and every-key-from watchers (each indexed differently).
                var request: WatchRequest
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: request = WatchRequest(key: keys[Int.random(in: 0..<6, using: &rng)])
                case 1: request = WatchRequest(key: keys[Int.random(in: 0..<6, using: &rng)], rangeEnd: [0])
                default:
                    request = WatchRequest(key: keys[Int.random(in: 0..<3, using: &rng)], rangeEnd: b("k\(Int.random(in: 3...6, using: &rng))"))
                }
                request.startRevision = Bool.random(using: &rng) ? Int64.random(in: low...(store.revision + 1), using: &rng) : 0
                let stream = WatchStreamID.random(in: 1...3, using: &rng)
                let out = bench.hub.create(request, on: stream, store: store)
                bench.deliver(out)
                if let id = out.first?.response.watchID {
                    if out.contains(where: { $0.response.canceled }) { canceledByCompaction.insert(id) }
                    watches.append((stream, id, request, store.revision))
                }
            case 9 where Int.random(in: 0..<8, using: &rng) == 0:
                // A snapshot was installed: everyone catches up from history.
                bench.hub.resyncAll()
            case 9:
                if let w = watches.randomElement(using: &rng) { bench.hub.markSlow(w.id, on: w.stream) }
            case 10 where Bool.random(using: &rng):
                // The transport refuses a live delivery: the watcher resumes at its revision.
                let key = keys[Int.random(in: 0..<6, using: &rng)]
                bench.apply(.put(PutRequest(key: key, value: b("\(step)"))), dropping: &rng)
            case 10:
                bench.deliver(bench.hub.catchUp(store: bench.kv.store, budget: Int.random(in: 1...5, using: &rng)))
            default:
                let store = bench.kv.store
                if store.revision > store.compactedRevision + 3, Int.random(in: 0..<4, using: &rng) == 0 {
                    bench.apply(.compact(revision: store.revision - 2))
                } else if Int.random(in: 0..<6, using: &rng) == 0, let w = watches.randomElement(using: &rng) {
                    bench.deliver(bench.hub.cancel(w.id, on: w.stream, revision: store.revision))
                    canceledByClient.insert([Int64(w.stream), w.id])
                }
            }
        }
        bench.deliver(bench.hub.catchUp(store: bench.kv.store, budget: .max))
        for w in watches {
            let responses = bench.received[w.stream]?[w.id] ?? []
            if responses.contains(where: { $0.canceled && $0.compactRevision > 0 }) { continue }
            let start = w.request.startRevision > 0 ? w.request.startRevision : w.createdAt + 1
            let range = KeyRange(key: w.request.key, rangeEnd: w.request.rangeEnd)
            let expected = bench.history.filter { $0.kv.modRevision >= start && range.contains($0.kv.key) }
            let got = responses.flatMap(\.events)
            if canceledByClient.contains([Int64(w.stream), w.id]) {
                // Up to the cancel: a prefix of its history.
                #expect(got.map(\.kv) == Array(expected.prefix(got.count)).map(\.kv), "seed \(seed) canceled watch \(w.id)")
            } else {
                #expect(got.map(\.kv) == expected.map(\.kv), "seed \(seed) watch \(w.id) on \(w.stream) from \(start)")
            }
            // A revision never straddles two responses.
            let revisionsPerResponse = responses.filter { !$0.events.isEmpty }.map { Set($0.events.map(\.kv.modRevision)) }
            for (a, b) in zip(revisionsPerResponse, revisionsPerResponse.dropFirst()) {
                #expect(a.isDisjoint(with: b), "seed \(seed): a revision was split")
            }
        }
    }
}
