import EnsembleAPI
@testable import EnsembleServer
import Foundation
import KV
import Raft
import SwiftProtobuf
import Testing

/// `PutWire` must read every put SwiftProtobuf reads the same way, or leave
/// it to SwiftProtobuf: members of one cluster may decode a log entry on
/// either path.
@Suite struct PutWireTests {
    static func randomBytes(_ rng: inout SplitMix64, upTo limit: Int) -> [UInt8] {
        (0..<Int(rng.next() % UInt64(limit + 1))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    static func randomPut(_ rng: inout SplitMix64) -> Etcdserverpb_PutRequest {
        var put = Etcdserverpb_PutRequest()
        put.key = Data(randomBytes(&rng, upTo: 40))
        put.value = Data(randomBytes(&rng, upTo: rng.next() % 8 == 0 ? 600 : 40))
        switch rng.next() % 4 {
        case 0: put.lease = 0
        case 1: put.lease = Int64(bitPattern: rng.next())
        default: put.lease = Int64(rng.next() % 100_000)
        }
        put.prevKv = rng.next() % 2 == 0
        put.ignoreValue = rng.next() % 3 == 0
        put.ignoreLease = rng.next() % 3 == 0
        return put
    }

    /// What SwiftProtobuf makes of `bytes` as a PutRequest, or nil if it refuses them.
    static func reference(_ bytes: [UInt8]) -> PutRequest? {
        (try? Etcdserverpb_PutRequest(serializedBytes: bytes)).map(PutRequest.init)
    }

    @Test func readsWhatSwiftProtobufWrites() throws {
        var rng = SplitMix64(seed: 0x9E7_0001)
        for _ in 0..<2_000 {
            let bytes: [UInt8] = try Self.randomPut(&rng).serializedBytes()
            let wire = try #require(PutWire(bytes, in: bytes.indices))
            #expect(wire.request(in: bytes) == Self.reference(bytes))
        }
    }

    /// Mutations of valid encodings and raw noise: wherever the reader accepts,
    /// SwiftProtobuf accepts too and agrees; repeated fields, unknown fields
    /// and truncations included.
    @Test func agreesWithSwiftProtobufOnMutatedInput() throws {
        var rng = SplitMix64(seed: 0x9E7_0002)
        var accepted = 0
        for round in 0..<20_000 {
            var bytes: [UInt8] = try Self.randomPut(&rng).serializedBytes()
            switch round % 5 {
            case 0: // another put's fields after these: later fields win
                bytes += try Self.randomPut(&rng).serializedBytes() as [UInt8]
            case 1: // an unknown field of each wire type
                let field = UInt8(7 + rng.next() % 8)
                let unknown: [[UInt8]] = [[field << 3, 0x96, 0x01], [field << 3 | 1] + Array(repeating: 1, count: 8),
                                          [field << 3 | 2, 2, 9, 9], [field << 3 | 5, 1, 2, 3, 4], [field << 3 | 3, field << 3 | 4]]
                let at = Int(rng.next() % 2) == 0 ? 0 : bytes.count
                bytes.insert(contentsOf: unknown[Int(rng.next() % 5)], at: at)
            case 2: // flip a byte
                if !bytes.isEmpty { bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 << (rng.next() % 8)) }
            case 3: // truncate
                bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count + 1))))
            default:
                bytes = Self.randomBytes(&rng, upTo: 30)
            }
            guard let wire = PutWire(bytes, in: bytes.indices) else { continue }
            accepted += 1
            let reference = try #require(Self.reference(bytes), "SwiftProtobuf refuses what PutWire read: \(bytes)")
            #expect(wire.request(in: bytes) == reference, "\(bytes)")
        }
        #expect(accepted > 8_000)
    }

    @Test func refusesWhatItLeavesToSwiftProtobuf() {
        let cases: [[UInt8]] = [
            [0x0a, 0x05, 1, 2],                  // key longer than the message
            [0x18],                              // lease without its varint
            [0x18] + Array(repeating: 0xff, count: 10) + [0x01],  // a varint of eleven bytes
            [0x0d, 1, 2, 3, 4],                  // key (field 1) as fixed32
            [0x00, 0x01],                        // field number 0
            [0x3b, 0x3c],                        // a group (field 7)
            [0x0f],                              // wire type 7
        ]
        for bytes in cases { #expect(PutWire(bytes, in: bytes.indices) == nil, "\(bytes)") }
    }

    /// Ten-byte varints (2⁶³, negative leases), a ten-byte varint whose last
    /// byte overflows 64 bits, five-byte tags and tags of 2³² and more: where
    /// the reader answers it agrees with SwiftProtobuf, and it leaves the
    /// overflow and the oversized tag to it.
    @Test func varintAndTagEdges() throws {
        let nine: [UInt8] = Array(repeating: 0x80, count: 9)
        let edges: [(bytes: [UInt8], readable: Bool)] = [
            ([0x18] + nine + [0x01], true),                              // lease 2⁶³ (Int64.min)
            ([0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], true),  // lease −1
            ([0x18] + nine + [0x02], false),                             // a bit past 64
            ([0x0a, 0x01, 0x6b, 0x18, 0x80, 0x00], true),                // a two-byte form of 0
            ([0xfa, 0xff, 0xff, 0xff, 0x0f, 0x00], true),                // field 2²⁹−1, a five-byte tag
            ([0x80, 0x80, 0x80, 0x80, 0x10, 0x00], false),               // tag 2³²
            ([0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00], false),         // tag 2³⁵
        ]
        for (bytes, readable) in edges {
            let wire = PutWire(bytes, in: bytes.indices)
            #expect((wire != nil) == readable, "\(bytes)")
            if let wire { #expect(wire.request(in: bytes) == Self.reference(bytes), "\(bytes)") }
        }
        let negative = [UInt8]([0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
        #expect(PutWire(negative, in: negative.indices)?.lease == -1)
    }

    /// The log entry embedding a request decodes, on both paths, to the
    /// request; other commands, and puts with other fields beside them, go to
    /// SwiftProtobuf.
    @Test func logEntriesDecodeTheSameOnBothPaths() throws {
        var rng = SplitMix64(seed: 0x9E7_0003)
        for _ in 0..<2_000 {
            let put = Self.randomPut(&rng)
            let entry = PutWire.commandEntry(embedding: try put.serializedBytes())
            var command = Ensemble_V1_Command()
            command.put = put
            #expect(try Ensemble_V1_Command(serializedBytes: entry) == command)
            #expect(PutWire.fromCommand(entry) == PutRequest(put))
            #expect(try KVReplica.decode(entry) == .put(PutRequest(put)))
            // With a request id after it: still a put alone.
            var withID = command
            withID.requestID = rng.next()
            #expect(PutWire.fromCommand(try withID.serializedBytes()) == PutRequest(put))
        }
        var delete = Ensemble_V1_Command()
        delete.deleteRange.key = Data("k".utf8)
        #expect(PutWire.fromCommand(try delete.serializedBytes()) == nil)
        // A put then a delete: the oneof's last member wins, so SwiftProtobuf decides.
        var put = Etcdserverpb_PutRequest()
        put.key = Data("k".utf8)
        let both = PutWire.commandEntry(embedding: try put.serializedBytes()) + (try delete.serializedBytes() as [UInt8])
        #expect(PutWire.fromCommand(both) == nil)
        #expect(try KVReplica.decode(both) == .deleteRange(DeleteRangeRequest(delete.deleteRange)))
        // Two puts merge: SwiftProtobuf's job too.
        let twice = PutWire.commandEntry(embedding: try put.serializedBytes()) + PutWire.commandEntry(embedding: [0x10, 0x01])
        #expect(PutWire.fromCommand(twice) == nil)
        #expect(PutWire.fromCommand([]) == nil)
    }

    /// Long payloads take a multi-byte length in the entry.
    @Test func embedsLongRequests() throws {
        var put = Etcdserverpb_PutRequest()
        put.key = Data("key".utf8)
        put.value = Data(repeating: 7, count: 300_000)
        let entry = PutWire.commandEntry(embedding: try put.serializedBytes())
        #expect(PutWire.fromCommand(entry) == PutRequest(put))
        #expect(try Ensemble_V1_Command(serializedBytes: entry).put == put)
    }
}

extension PutWireTests {
    /// A header-only response is written byte for byte as SwiftProtobuf
    /// writes it; one with a previous value goes through SwiftProtobuf.
    @Test func writesResponsesAsSwiftProtobufDoes() throws {
        var rng = SplitMix64(seed: 0x9E7_0004)
        let values: [UInt64] = [0, 1, 127, 128, 300, UInt64.max, 1 << 35]
        for _ in 0..<500 {
            let pick = { (rng: inout SplitMix64) in rng.next() % 2 == 0 ? values[Int(rng.next() % UInt64(values.count))] : rng.next() }
            let headers = HeaderSource(clusterID: pick(&rng), memberID: pick(&rng), raftTerm: pick(&rng))
            var response = PutResponse()
            response.revision = Int64(bitPattern: pick(&rng))
            if rng.next() % 4 == 0 {
                response.previous = KeyValue(key: [1, 2], createRevision: 4, modRevision: 5, version: 6, value: [3], lease: 7)
            }
            let expected: [UInt8] = try Etcdserverpb_PutResponse(response, headers).serializedBytes()
            #expect(try PutWire.response(response) { headers }.encode().get() == expected)
        }
    }
}
