import EnsembleAPI
import EnsembleClient
import EnsembleServer
import Foundation
import KV
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// The client against a real in-process Ensemble node (see ``TestServer``).
@Suite(.serialized, .timeLimit(.minutes(1))) struct ClientIntegrationTests {
    func withServer(
        watchQueueBytes: Int = 4 << 20, _ body: (TestServer, GRPCConnection, EtcdClient) async throws -> Void
    ) async throws {
        let server = try await TestServer.start(watchQueueBytes: watchQueueBytes)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let connection = try await GRPCConnection.connect(host: "127.0.0.1", port: server.port, group: group)
            try await body(server, connection, EtcdClient(connection))
            await connection.close()
        } catch {
            try? await group.shutdownGracefully()
            await server.stop()
            throw error
        }
        try await group.shutdownGracefully()
        await server.stop()
    }

    func put(_ key: String, _ value: String, lease: Int64 = 0) -> Etcdserverpb_PutRequest {
        var request = Etcdserverpb_PutRequest()
        request.key = Data(key.utf8)
        request.value = Data(value.utf8)
        request.lease = lease
        return request
    }

    @Test func putRangeTxnAndDeleteRoundTrip() async throws {
        try await withServer { _, _, etcd in
            let first = try await etcd.put(put("foo", "bar"))
            #expect(first.header.revision >= 2)
            #expect(first.header.clusterID == 0x1234)
            _ = try await etcd.put(put("fop", "baz"))

            var range = Etcdserverpb_RangeRequest()
            range.key = Data("fo".utf8)
            range.rangeEnd = Data("fp".utf8)
            let read = try await etcd.range(range)
            #expect(read.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["bar", "baz"])
            #expect(read.count == 2)

            var txn = Etcdserverpb_TxnRequest()
            var compare = Etcdserverpb_Compare()
            compare.key = Data("foo".utf8)
            compare.target = .value
            compare.result = .equal
            compare.value = Data("bar".utf8)
            txn.compare = [compare]
            var op = Etcdserverpb_RequestOp()
            op.requestPut = put("foo", "qux")
            txn.success = [op]
            let applied = try await etcd.txn(txn)
            #expect(applied.succeeded)
            #expect(try await etcd.txn(txn).succeeded == false, "the value is no longer bar")

            var delete = Etcdserverpb_DeleteRangeRequest()
            delete.key = Data("fo".utf8)
            delete.rangeEnd = Data("fp".utf8)
            #expect(try await etcd.deleteRange(delete).deleted == 2)
            #expect(try await etcd.range(range).kvs.isEmpty)
        }
    }

    @Test func anUnknownLeaseFailsWithEtcdsCodeAndMessage() async throws {
        try await withServer { _, _, etcd in
            let failure = await callError { _ = try await etcd.put(put("k", "v", lease: 0x1234_ABCD)) }
            #expect(failure == GRPCCallError(code: 5, message: "etcdserver: requested lease not found"))

            var grant = Etcdserverpb_LeaseGrantRequest()
            grant.ttl = 60
            let lease = try await etcd.leaseGrant(grant)
            #expect(lease.id != 0 && lease.ttl == 60)
            _ = try await etcd.put(put("k", "v", lease: lease.id))
        }
    }

    @Test func aStatusMessageArrivesPercentDecoded() async throws {
        try await withServer { _, connection, _ in
            let failure = await callError { _ = try await connection.unary("/test.Test/Fail", [1]) }
            #expect(failure == GRPCCallError(code: 9, message: TestServer.failMessage))
            let unknown = await callError { _ = try await connection.unary("/test.Test/Nothing", [1]) }
            #expect(unknown?.code == 12)
        }
    }

    @Test func aDeadlineEndsTheCallAndLeavesTheConnectionUsable() async throws {
        try await withServer { _, connection, _ in
            let started = ContinuousClock.now
            let failure = await callError { _ = try await connection.unary("/test.Test/Slow", [], timeout: .milliseconds(200)) }
            let elapsed = ContinuousClock.now - started
            #expect(failure == .deadlineExceeded)
            #expect(elapsed >= .milliseconds(190) && elapsed < .seconds(2), "\(elapsed)")
            let echoed = try await connection.unary("/test.Test/Echo", [4, 2], timeout: .seconds(5))
            #expect(echoed == [4, 2])
        }
    }

    @Test func cancellingTheCallingTaskCancelsTheCall() async throws {
        try await withServer { _, connection, _ in
            let call = Task { try await connection.unary("/test.Test/Slow", []) }
            try await Task.sleep(for: .milliseconds(100))
            let started = ContinuousClock.now
            call.cancel()
            let failure = await callError { _ = try await call.value }
            #expect(failure == .cancelled)
            #expect(ContinuousClock.now - started < .seconds(1))
            #expect(try await connection.unary("/test.Test/Echo", [1]) == [1])
        }
    }

    @Test func aWatchStreamSeesPutsAndGoesOnAfterHalfClose() async throws {
        try await withServer { _, _, etcd in
            let watch = etcd.watch()
            var create = Etcdserverpb_WatchCreateRequest()
            create.key = Data("w/".utf8)
            create.rangeEnd = Data("w0".utf8)
            create.prevKv = true
            try watch.create(create)
            var responses = watch.responses.makeAsyncIterator()
            let created = try #require(try await responses.next())
            #expect(created.created)

            for i in 0..<3 { _ = try await etcd.put(put("w/\(i)", "v\(i)")) }
            _ = try await etcd.put(put("elsewhere", "x"))
            var keys: [String] = []
            while keys.count < 3, let response = try await responses.next() {
                #expect(response.watchID == created.watchID)
                keys += response.events.map { String(decoding: $0.kv.key, as: UTF8.self) }
            }
            #expect(keys == ["w/0", "w/1", "w/2"])

            // etcd keeps a half-closed watch streaming until the client
            // cancels (a client that only sends a create may half-close).
            watch.finish()
            _ = try await etcd.put(put("w/3", "v3"))
            let after = try #require(try await responses.next())
            #expect(after.events.map { String(decoding: $0.kv.key, as: UTF8.self) } == ["w/3"])
            watch.cancel()
        }
    }

    /// Watchers of one put share its encoded events (each response is its
    /// own fields followed by them): every watcher still gets its own id and
    /// header, the events it asked for, and prev_kv only if it asked.
    @Test func watchersOfOnePutEachGetTheirOwnResponse() async throws {
        try await withServer { _, _, etcd in
            let watch = etcd.watch()
            func create(_ key: String, prevKV: Bool = false, noDelete: Bool = false) throws {
                var create = Etcdserverpb_WatchCreateRequest()
                create.key = Data(key.utf8)
                create.prevKv = prevKV
                if noDelete { create.filters = [.nodelete] }
                try watch.create(create)
            }
            try create("s")
            try create("s")
            try create("s", prevKV: true)
            try create("s", prevKV: true, noDelete: true)
            var responses = watch.responses.makeAsyncIterator()
            var ids: [Int64] = []
            while ids.count < 4, let response = try await responses.next() {
                if response.created { ids.append(response.watchID) }
            }
            #expect(Set(ids).count == 4)
            _ = try await etcd.put(put("s", "one"))
            _ = try await etcd.put(put("s", "two"))
            var seen: [Int64: [String]] = [:]
            var previous: [Int64: [String]] = [:]
            while seen.values.reduce(0, { $0 + $1.count }) < 8, let response = try await responses.next() {
                #expect(response.header.clusterID == 0x1234 && response.header.revision > 1)
                for event in response.events {
                    seen[response.watchID, default: []].append(String(decoding: event.kv.value, as: UTF8.self))
                    if event.hasPrevKv { previous[response.watchID, default: []].append(String(decoding: event.prevKv.value, as: UTF8.self)) }
                }
            }
            for id in ids { #expect(seen[id] == ["one", "two"], "watcher \(id)") }
            #expect(previous[ids[0]] == nil && previous[ids[1]] == nil)
            #expect(previous[ids[2]] == ["one"] && previous[ids[3]] == ["one"])
            watch.cancel()
        }
    }

    /// A revision split into fragments goes out whole once its first fragment
    /// did, however full the stream's queue: a replay from the first
    /// fragment would repeat the ones sent (clientv3 joins fragments, so the
    /// application would see their events twice).
    @Test func aFragmentedRevisionIsNeverSentPartlyTwice() async throws {
        try await withServer(watchQueueBytes: 1) { server, _, etcd in
            server.node.perform { $0.watches.maxEventsPerResponse = 10 }
            for i in 0..<35 { _ = try await etcd.put(put("f/\(i)", String(repeating: "x", count: 100))) }
            let watch = etcd.watch()
            var create = Etcdserverpb_WatchCreateRequest()
            create.key = Data("f/".utf8)
            create.rangeEnd = Data("f0".utf8)
            create.fragment = true
            try watch.create(create)
            let received = Mutex<[(fragment: Bool, keys: [String])]>([])
            let reader = Task {
                for try await response in watch.responses where !response.events.isEmpty {
                    let keys = response.events.map { String(decoding: $0.kv.key, as: UTF8.self) }
                    received.withLock { $0.append((response.fragment, keys)) }
                }
            }
            try await Task.sleep(for: .milliseconds(200))
            var delete = Etcdserverpb_DeleteRangeRequest()
            delete.key = Data("f/".utf8)
            delete.rangeEnd = Data("f0".utf8)
            _ = try await etcd.deleteRange(delete)
            let deadline = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < deadline, received.withLock({ $0.flatMap(\.keys).count }) < 35 {
                try await Task.sleep(for: .milliseconds(20))
            }
            // Catch-ups run every 100 ms: a replay would have come by now.
            try await Task.sleep(for: .milliseconds(500))
            watch.cancel()
            _ = await reader.result
            let responses = received.withLock { $0 }
            let keys = responses.flatMap(\.keys)
            #expect(keys.count == 35 && Set(keys).count == 35, "\(keys.count) events, \(Set(keys).count) distinct")
            #expect(responses.map(\.fragment) == [true, true, true, false])
        }
    }

    /// Watch requests wait on the apply thread, but not without bound: progress
    /// requests made while one waits are answered by it, and a client that
    /// sends more requests than the bound (1,000 here) before they are handled
    /// is refused.
    @Test func watchRequestsPileUpOnlySoFar() async throws {
        try await withServer { server, _, etcd in
            let watch = etcd.watch()
            var responses = watch.responses.makeAsyncIterator()
            var progress = Etcdserverpb_WatchRequest()
            progress.progressRequest = Etcdserverpb_WatchProgressRequest()
            server.node.perform { _ in Thread.sleep(forTimeInterval: 0.5) }
            for _ in 0..<5_000 { try watch.send(progress) }
            let answered = try #require(try await responses.next())
            #expect(answered.watchID == -1 && !answered.canceled)

            // The apply thread is held until the call is refused.
            let gate = DispatchSemaphore(value: 0)
            server.node.perform { _ in _ = gate.wait(timeout: .now() + 20) }
            for i in 0..<1_100 {
                var create = Etcdserverpb_WatchCreateRequest()
                create.key = Data("p\(i)".utf8)
                try watch.create(create)
            }
            do {
                while try await responses.next() != nil {}
                Issue.record("the call ended OK")
            } catch let error as GRPCCallError {
                #expect(error.code == 8, "\(error)")
            }
            gate.signal()
        }
    }

    @Test func aBidirectionalStreamEchoesInOrderIncludingSendsBeforeItOpens() async throws {
        try await withServer { _, connection, _ in
            let stream = connection.stream("/test.Test/EchoStream")
            let sent = (0..<200).map { i in [UInt8(i % 256), UInt8(i / 256)] }
            for message in sent { stream.send(message) }
            stream.finish()
            stream.send([99])  // after the half-close: dropped
            var got: [[UInt8]] = []
            for try await message in stream.messages { got.append(message) }
            #expect(got == sent)
        }
    }

    /// A server shutting down (GRPCServer.shutdown) says GOAWAY: streams end
    /// with etcd's "server stopped" (clients retry them elsewhere), a unary
    /// call already open still gets its answer, new calls are refused, and
    /// the connection closes once nothing is left on it.
    @Test func aServerShuttingDownSaysGoAwayAndLetsOpenCallsFinish() async throws {
        try await withServer { server, connection, _ in
            let stream = connection.stream("/test.Test/EchoStream")
            stream.send([1])
            var messages = stream.messages.makeAsyncIterator()
            #expect(try await messages.next() == [1])
            async let slow = connection.unary("/test.Test/Slow", [], timeout: .seconds(20))
            try await Task.sleep(for: .milliseconds(100))  // the slow call is open
            let started = ContinuousClock.now
            let shutdown = Task { await server.grpc.shutdown(grace: .seconds(10)) }
            let ended = await callError { _ = try await messages.next() }
            #expect(ended == GRPCCallError(code: 14, message: "etcdserver: server stopped"))
            let refused = await callError { _ = try await connection.unary("/test.Test/Echo", [2]) }
            #expect(refused?.code == 14 && refused?.message.contains("GOAWAY NO_ERROR") == true, "\(String(describing: refused))")
            server.stopping.set()  // the slow call answers now
            #expect(try await slow == [])
            await shutdown.value
            #expect(!connection.isOpen)
            // The server closed the connection once the slow call was answered, not at the grace.
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }

    @Test func cancellingAStreamEndsItWithCancelled() async throws {
        try await withServer { _, connection, _ in
            let stream = connection.stream("/test.Test/EchoStream")
            stream.send([1])
            var messages = stream.messages.makeAsyncIterator()
            let first = try await messages.next()
            #expect(first == [1])
            stream.cancel()
            let failure = await callError { _ = try await messages.next() }
            #expect(failure == .cancelled)
        }
    }

    @Test func manyConcurrentCallsShareOneConnection() async throws {
        try await withServer { _, connection, etcd in
            // Hundreds of calls at once, every one its own stream.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<600 {
                    group.addTask {
                        let payload = Array("call \(i)".utf8)
                        let reply = try await connection.unary("/test.Test/Echo", payload, timeout: .seconds(20))
                        #expect(reply == payload)
                    }
                }
                for i in 0..<200 {
                    group.addTask { _ = try await etcd.put(put("c/\(i)", "\(i)")) }
                }
                try await group.waitForAll()
            }
            var range = Etcdserverpb_RangeRequest()
            range.key = Data("c/".utf8)
            range.rangeEnd = Data("c0".utf8)
            range.countOnly = true
            let counted = try await etcd.range(range).count
            #expect(counted == 200)
        }
    }

    @Test func requestsFarBeyondTheFlowControlWindowsKeepFlowing() async throws {
        // The server credits the connection's and each stream's inbound
        // window back (it has no multiplexer to do it): 24 MiB of requests on
        // one connection, and 3 MiB on one long-lived stream, exceed both
        // windows several times.
        try await withServer { _, connection, _ in
            let payload = [UInt8](repeating: 7, count: 64 << 10)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        for _ in 0..<48 {
                            let reply = try await connection.unary("/test.Test/Echo", payload, timeout: .seconds(20))
                            #expect(reply.count == payload.count)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let stream = connection.stream("/test.Test/EchoStream")
            var messages = stream.messages.makeAsyncIterator()
            for i in 0..<48 {
                stream.send(payload + [UInt8(i)])
                let echoed = try await messages.next()
                #expect(echoed?.last == UInt8(i))
            }
            stream.finish()
        }
    }

    @Test func aLostConnectionFailsOpenAndLaterCallsWithUnavailable() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // A peer that accepts, never answers, and drops the connection after 200 ms.
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.scheduleTask(in: .milliseconds(200)) { channel.close(promise: nil) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let connection = try await GRPCConnection.connect(host: "127.0.0.1", port: port, group: group)
        let stream = connection.stream("/test.Test/EchoStream")
        stream.send([1])

        let failure = await callError { _ = try await connection.unary("/test.Test/Slow", []) }
        #expect(failure == GRPCCallError(code: 14, message: "connection to 127.0.0.1:\(port) lost before the call completed"))
        let streamFailure = await callError { for try await _ in stream.messages {} }
        #expect(streamFailure?.code == GRPCCallError.unavailableCode)
        #expect(!connection.isOpen)
        let later = await callError { _ = try await connection.unary("/test.Test/Echo", [1]) }
        #expect(later?.code == GRPCCallError.unavailableCode)
        try await server.close()
        try await group.shutdownGracefully()
    }

    @Test func aClosedConnectionRefusesCallsAndARefusedConnectIsUnavailable() async throws {
        try await withServer { _, connection, _ in
            await connection.close()
            let unary = await callError { _ = try await connection.unary("/test.Test/Echo", [1]) }
            #expect(unary == GRPCCallError(code: 14, message: "connection to 127.0.0.1:\(connection.port) is closed"))
            let stream = await callError { for try await _ in connection.stream("/test.Test/EchoStream").messages {} }
            #expect(stream?.code == 14)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let refused = await callError { _ = try await GRPCConnection.connect(host: "127.0.0.1", port: 1, group: group) }
        #expect(refused?.code == 14)
        #expect(refused?.message.hasPrefix("cannot connect to 127.0.0.1:1") == true)
        try await group.shutdownGracefully()
    }
}
