import EnsembleAPI
import EnsembleBench
import EnsembleClient
import Foundation
import Testing

/// `ensemble bench`'s runners end to end against an in-process node.
@Suite(.serialized, .timeLimit(.minutes(1))) struct BenchRunTests {
    @Test func putRunsEveryRequestOverSeveralConnections() async throws {
        let server = try await TestServer.start()
        let load = BenchLoad(
            endpoints: [BenchEndpoint(host: "127.0.0.1", port: server.port)], conns: 2, clients: 10, total: 300, rate: 0)
        let connections = try await BenchConnections.open(load.conns, to: load.endpoints, eventLoopThreads: 1)
        let writes = BenchWorkloads.Writes(keySize: 8, valueSize: 16, keys: KeyPicker(keySpaceSize: 50, sequential: true))
        let progress = BenchProgress(total: load.total)
        let report = await BenchRunner.run(load, on: connections, progress: progress, request: BenchWorkloads.put(writes))
        #expect(report.latencies.count == 300)
        #expect(report.errors.isEmpty, "\(report.errors)")
        #expect(progress.done == 300)

        var range = Etcdserverpb_RangeRequest()
        range.key = Data([0])
        range.rangeEnd = Data([0xFF])
        range.countOnly = true
        #expect(try await connections.clients[0].range(range).count == 50, "sequential keys cover the key space")
        await connections.close()
        await server.stop()
    }

    @Test func aRateLimitHoldsTheRunBack() async throws {
        let server = try await TestServer.start()
        let load = BenchLoad(
            endpoints: [BenchEndpoint(host: "127.0.0.1", port: server.port)], conns: 1, clients: 4, total: 20, rate: 50)
        let connections = try await BenchConnections.open(1, to: load.endpoints, eventLoopThreads: 1)
        let report = await BenchRunner.run(
            load, on: connections, progress: BenchProgress(total: 20),
            request: BenchWorkloads.range(key: "a", end: nil, serializable: true))
        #expect(report.latencies.count == 20)
        // 20 starts 20 ms apart take at least 380 ms.
        #expect(report.total >= .milliseconds(380), "\(report.total)")
        await connections.close()
        await server.stop()
    }

    /// A lost connection is dialled again: its requesters lose the calls
    /// they sent on it (here one each), not the rest of the run — before,
    /// every remaining request failed on the closed connection in
    /// microseconds. Both runners: callbacks (unary workloads) and tasks
    /// (the watch benchmark's puts).
    @Test func aLostConnectionIsDialledAgain() async throws {
        let server = try await TestServer.start()
        let load = BenchLoad(
            endpoints: [BenchEndpoint(host: "127.0.0.1", port: server.port)], conns: 1, clients: 2, total: 2_000, rate: 0)
        let writes = BenchWorkloads.Writes(keySize: 8, valueSize: 16, keys: KeyPicker(keySpaceSize: 50, sequential: true))
        for viaTasks in [false, true] {
            let connections = try await BenchConnections.open(1, to: load.endpoints, eventLoopThreads: 1)
            await connections.clients[0].connection.close()
            let progress = BenchProgress(total: load.total)
            let report: LatencyReport
            if viaTasks {
                report = await BenchRunner.run(load, on: connections, progress: progress) { client, i, _ in
                    var request = Etcdserverpb_PutRequest()
                    request.key = Data("k\(i % 50)".utf8)
                    _ = try await client.put(request)
                }
            } else {
                report = await BenchRunner.run(load, on: connections, progress: progress, request: BenchWorkloads.put(writes))
            }
            let failed = report.errors.values.reduce(0, +)
            #expect(failed >= 1 && failed <= 2, "\(report.errors)")
            #expect(report.latencies.count == load.total - failed)
            #expect(connections.slots[0].redials == 1)
            #expect(connections.clients[0].connection.isOpen)
            await connections.close()
        }
        await server.stop()
    }

    /// A member that stays away: requesters fail one request per dial, the
    /// dials back off, and the run still ends.
    @Test func anEndpointThatStaysAwayEndsTheRunWithErrors() async throws {
        let server = try await TestServer.start()
        let load = BenchLoad(
            endpoints: [BenchEndpoint(host: "127.0.0.1", port: server.port)], conns: 1, clients: 2, total: 12, rate: 0)
        let connections = try await BenchConnections.open(1, to: load.endpoints, eventLoopThreads: 1)
        await server.stop()
        await connections.clients[0].connection.close()
        let writes = BenchWorkloads.Writes(keySize: 8, valueSize: 16, keys: KeyPicker(keySpaceSize: 50, sequential: true))
        let report = await BenchRunner.run(load, on: connections, progress: BenchProgress(total: load.total), request: BenchWorkloads.put(writes))
        #expect(report.latencies.isEmpty)
        #expect(report.errors.values.reduce(0, +) == 12, "\(report.errors)")
        #expect(connections.slots[0].redials >= 5 && connections.slots[0].redials <= 12)
        #expect(report.total > .milliseconds(25 + 50 + 100), "the dials back off: \(report.total)")
        await connections.close()
    }

    @Test func errorsAreCountedByEtcdsText() async throws {
        let server = try await TestServer.start()
        let load = BenchLoad(
            endpoints: [BenchEndpoint(host: "127.0.0.1", port: server.port)], conns: 1, clients: 3, total: 30, rate: 0)
        let connections = try await BenchConnections.open(1, to: load.endpoints, eventLoopThreads: 1)
        let report = await BenchRunner.run(load, on: connections, progress: BenchProgress(total: 30)) { client, _, _ in
            var request = Etcdserverpb_PutRequest()
            request.key = Data("k".utf8)
            request.lease = 42
            _ = try await client.put(request)
        }
        #expect(report.latencies.isEmpty)
        #expect(report.errors == ["etcdserver: requested lease not found": 30])
        await connections.close()
        await server.stop()
    }

    /// `watch` against a test server with `total` puts over two connections.
    func runWatch(_ watch: WatchLoad, total: Int) async throws -> WatchBenchResult {
        let server = try await TestServer.start()
        let load = BenchLoad(
            endpoints: [BenchEndpoint(host: "127.0.0.1", port: server.port)], conns: 2, clients: 4, total: total, rate: 0)
        let connections = try await BenchConnections.open(load.conns, to: load.endpoints, eventLoopThreads: 1)
        let result = try await WatchBench.run(load, watch, on: connections, progress: BenchProgress(total: watch.watchers * total))
        await connections.close()
        await server.stop()
        return result
    }

    @Test func watchSeesEveryPutOnEveryWatcher() async throws {
        let result = try await runWatch(WatchLoad(streams: 3, watchersPerStream: 2, keySize: 16, valueSize: 12), total: 40)
        #expect(result.puts.latencies.count == 40)
        #expect(result.events.latencies.count == 240)
        #expect(result.events.errors.isEmpty, "\(result.events.errors)")
        #expect(result.creation.latencies.count == 6, "one creation latency per watcher")
    }

    /// etcd's watched keys: watchers take them round-robin, put i goes to
    /// key i % watched-key-total; every watcher gets exactly the puts to its
    /// key, and two watched keys that are one key (random indexes of a
    /// smaller key space) get each other's puts too.
    @Test func watchOverWatchedKeysSeesThePutsToEachWatchersKey() async throws {
        let watch = WatchLoad(
            streams: 2, watchersPerStream: 5, watchedKeyTotal: 3, keySpaceSize: 3, sequentialKeys: true, keySize: 8, valueSize: 12)
        let plan = watch.plan()
        #expect(plan.watched == [[0, 1, 2, 0, 1], [2, 0, 1, 2, 0]])
        let result = try await runWatch(watch, total: 30)
        #expect(result.puts.latencies.count == 30)
        // Ten puts to each of three distinct keys: ten events per watcher.
        #expect(result.events.latencies.count == 100)
        #expect(result.events.errors.isEmpty, "\(result.events.errors)")
        #expect(result.events.fastest > 0)

        let same = WatchLoad(streams: 2, watchersPerStream: 3, watchedKeyTotal: 2, keySpaceSize: 1, keySize: 8, valueSize: 12)
        #expect(same.expectedEvents(same.plan(), puts: 10) == 60, "both watched keys are key 0: every put reaches all six")
    }
}
