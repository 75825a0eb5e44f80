import EnsembleAPI
import Foundation
import SwiftProtobuf
import Testing

@Suite("Round trips")
struct RoundTripTests {
    @Test("golden encodings are canonical: decode then encode gives the same bytes")
    func goldenBytesAreCanonical() throws {
        for (type, hex) in GoldenCorpus.cases {
            let again = try reencode(type, bytes(hex: hex))
            #expect(hexString(again) == hex, "\(type.protoMessageName)")
        }
    }

    @Test("every Raft command kind survives binary and text round trips")
    func commandKinds() throws {
        let commands: [Ensemble_V1_Command] = [
            .with { $0.range = .with { $0.key = data("a"); $0.rangeEnd = data("z"); $0.limit = 5 }; $0.requestID = 1 },
            .with { $0.put = .with { $0.key = data("k"); $0.value = Data(repeating: 0xab, count: 300); $0.lease = 9 }; $0.requestID = 2 },
            .with { $0.deleteRange = .with { $0.key = data("k"); $0.prevKv = true }; $0.requestID = 3 },
            .with {
                $0.txn = .with {
                    $0.compare = [.with { $0.key = data("k"); $0.target = .value; $0.value = Data() }]
                    $0.failure = [.with { $0.requestRange = .with { $0.key = data("k") } }]
                }
                $0.requestID = 4
            },
            .with { $0.compaction = .with { $0.revision = 100; $0.physical = true }; $0.requestID = 5 },
            .with { $0.leaseGrant = .with { $0.ttl = 10; $0.id = 77 }; $0.requestID = 6 },
            .with { $0.leaseRevoke = .with { $0.id = 77 }; $0.requestID = 7 },
            .with { $0.leaseCheckpoints = .with { $0.checkpoints = [.with { $0.id = 77; $0.remainingTtl = 4 }] }; $0.requestID = 8 },
            // No command at all: only the request ID travels.
            .with { $0.requestID = 9 },
        ]
        for command in commands {
            let wire: [UInt8] = try command.serializedBytes()
            #expect(try Ensemble_V1_Command(serializedBytes: wire) == command)
            #expect(try Ensemble_V1_Command(textFormatString: command.textFormatString()) == command)
        }
        // Distinct kinds stay distinct after a round trip.
        let kinds = try commands.map { try Ensemble_V1_Command(serializedBytes: $0.serializedBytes() as [UInt8]).command }
        #expect(kinds[0] != kinds[1])
        #expect(kinds[8] == nil)
    }

    @Test("fields from newer clients are kept as unknown fields and written back")
    func unknownFieldsArePreserved() throws {
        // PutRequest{key:"foo"} followed by field 100 (varint 1) and field 101 (bytes "hi").
        let wire = bytes(hex: "0a03666f6fa00601aa06026869")
        let put = try Etcdserverpb_PutRequest(serializedBytes: wire)
        #expect(put.key == data("foo"))
        #expect(!put.unknownFields.data.isEmpty)
        #expect(hexString(try put.serializedBytes() as [UInt8]) == hexString(wire))
    }

    @Test("enum values this side does not know survive a round trip")
    func unrecognizedEnumValues() throws {
        // sort_order = 7, sort_target = 9, neither defined in v3.4.
        let wire = bytes(hex: "0a016128073009")
        let range = try Etcdserverpb_RangeRequest(serializedBytes: wire)
        #expect(range.sortOrder == .UNRECOGNIZED(7))
        #expect(range.sortTarget == .UNRECOGNIZED(9))
        #expect(hexString(try range.serializedBytes() as [UInt8]) == hexString(wire))
        // Unpacked repeated enums are accepted as well as packed ones.
        let watch = try Etcdserverpb_WatchCreateRequest(serializedBytes: bytes(hex: "28002801"))
        #expect(watch.filters == [.noput, .nodelete])
    }

    @Test("a large range response round-trips")
    func largeMessage() throws {
        let response = Etcdserverpb_RangeResponse.with {
            $0.header = .with { $0.clusterID = .max; $0.memberID = 1; $0.revision = .max; $0.raftTerm = 3 }
            $0.kvs = (0..<2_000).map { i in
                .with {
                    $0.key = data("/key/\(i)")
                    $0.value = Data(repeating: UInt8(truncatingIfNeeded: i), count: 512)
                    $0.createRevision = Int64(i)
                    $0.modRevision = Int64(i) * 2
                    $0.version = 1
                    $0.lease = i.isMultiple(of: 3) ? Int64(i) : 0
                }
            }
            $0.more = true
            $0.count = 1_000_000
        }
        let wire: [UInt8] = try response.serializedBytes()
        #expect(wire.count > 2_000 * 512)
        #expect(try Etcdserverpb_RangeResponse(serializedBytes: wire) == response)
    }

    @Test("auth records round-trip")
    func authRecords() throws {
        let role = Authpb_Role.with {
            $0.name = data("admin")
            $0.keyPermission = [
                .with { $0.permType = .read; $0.key = data("/a") },
                .with { $0.permType = .write; $0.key = data("/b"); $0.rangeEnd = data("/c") },
            ]
        }
        let user = Authpb_User.with {
            $0.name = data("root")
            $0.password = data("$2a$10$hash")
            $0.roles = ["root", "admin"]
            $0.options = .with { $0.noPassword = true }
        }
        #expect(try Authpb_Role(serializedBytes: role.serializedBytes() as [UInt8]) == role)
        #expect(try Authpb_User(serializedBytes: user.serializedBytes() as [UInt8]) == user)
    }
}
