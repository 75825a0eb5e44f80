import EnsembleClient
import Foundation
import Testing

/// What the frame-level client does itself that NIOHTTP2's stream channels
/// used to: credit receive windows and take calls from any thread. (Streams
/// beyond the server's limit: ``MisbehavingServerTests``.)
extension ClientIntegrationTests {
    @Test func responsesFarBeyondTheReceiveWindowsKeepFlowing() async throws {
        try await withServer { _, connection, _ in
            // Each unary response (1 MiB + prefix) is larger than the 1 MiB
            // stream window, and 24 of them exceed the 16 MiB connection window.
            let payload = [UInt8](repeating: 3, count: 1 << 20)
            for i in 0..<24 {
                let reply = try await connection.unary("/test.Test/Echo", payload + [UInt8(i)], timeout: .seconds(20))
                #expect(reply.count == payload.count + 1 && reply.last == UInt8(i))
            }
            // 20 MiB on one stream, sent before anything is read: the stream's
            // window is credited back as messages arrive.
            let stream = connection.stream("/test.Test/EchoStream")
            let chunk = [UInt8](repeating: 5, count: 512 << 10)
            for i in 0..<40 { stream.send(chunk + [UInt8(i)]) }
            stream.finish()
            var count = 0
            for try await message in stream.messages {
                #expect(message.count == chunk.count + 1 && message.last == UInt8(count))
                count += 1
            }
            #expect(count == 40)
        }
    }

    @Test func callsFromManyThreadsAtOnce() async throws {
        try await withServer { _, connection, _ in
            // Sends on one stream from 8 threads keep each thread's order.
            let stream = connection.stream("/test.Test/EchoStream")
            DispatchQueue.concurrentPerform(iterations: 8) { thread in
                for i in 0..<250 { stream.send([UInt8(thread), UInt8(i)]) }
            }
            stream.finish()
            var next = [Int](repeating: 0, count: 8)
            for try await message in stream.messages {
                let thread = Int(message[0])
                #expect(Int(message[1]) == next[thread])
                next[thread] += 1
            }
            #expect(next == [Int](repeating: 250, count: 8))

            // Unary calls started from many threads, all in flight together.
            let calls = (0..<500).map { i in
                Task.detached { try await connection.unary("/test.Test/Echo", Array("\(i)".utf8), timeout: .seconds(20)) }
            }
            for (i, call) in calls.enumerated() { #expect(try await call.value == Array("\(i)".utf8)) }
        }
    }
}
