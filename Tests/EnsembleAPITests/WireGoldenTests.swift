import EnsembleAPI
import Foundation
import SwiftProtobuf
import Testing

// Golden wire bytes. Each `hex` was produced once, outside the tests, with
//   printf '%s' "$text" | protoc -I Protos --encode=<type> <all protos> | xxd -p
// (libprotoc 3.21.12) against Protos/, whose etcd files compile to the same
// descriptors as etcd v3.4.45's rpc.proto/kv.proto/auth.proto minus gogoproto
// and HTTP annotations. The tests need no protoc.
@Suite("Wire compatibility with protoc (golden bytes)")
struct WireGoldenTests {
    static let bigLease: Int64 = 7_587_869_384_637_432_123

    @Test func putRequest() throws {
        try expectGolden(
            Etcdserverpb_PutRequest.with {
                $0.key = data("foo")
                $0.value = data("bar")
                $0.lease = Self.bigLease
                $0.prevKv = true
                $0.ignoreLease = true
            },
            text: #"key: "foo" value: "bar" lease: 7587869384637432123 prev_kv: true ignore_lease: true"#,
            hex: "0a03666f6f120362617218bb8281cb8ce0e1a66920013001"
        )
        // Binary key, empty value (absent on the wire), ignore_value.
        try expectGolden(
            Etcdserverpb_PutRequest.with {
                $0.key = Data([0x6b, 0x00, 0xff])
                $0.ignoreValue = true
            },
            text: #"key: "k\000\377" value: "" ignore_value: true"#,
            hex: "0a036b00ff2801"
        )
    }

    @Test func rangeRequestWithSortEnums() throws {
        try expectGolden(
            Etcdserverpb_RangeRequest.with {
                $0.key = data("a")
                $0.rangeEnd = Data([0])
                $0.limit = 10
                $0.revision = 42
                $0.sortOrder = .descend
                $0.sortTarget = .mod
                $0.serializable = true
                $0.keysOnly = true
                $0.minModRevision = 3
                $0.maxCreateRevision = 100
            },
            text: #"key: "a" range_end: "\000" limit: 10 revision: 42 sort_order: DESCEND sort_target: MOD serializable: true keys_only: true min_mod_revision: 3 max_create_revision: 100"#,
            hex: "0a0161120100180a202a280230033801400150036864"
        )
        // Negative int64 takes ten varint bytes; Int64.max takes nine.
        try expectGolden(
            Etcdserverpb_RangeRequest.with {
                $0.key = data("/registry/")
                $0.rangeEnd = data("/registry0")
                $0.revision = -1
                $0.sortOrder = .ascend
                $0.sortTarget = .value
                $0.countOnly = true
                $0.minCreateRevision = 1
                $0.maxModRevision = .max
            },
            text: #"key: "/registry/" range_end: "/registry0" revision: -1 sort_order: ASCEND sort_target: VALUE count_only: true min_create_revision: 1 max_mod_revision: 9223372036854775807"#,
            hex: "0a0a2f72656769737472792f120a2f72656769737472793020ffffffffffffffffff0128013004480158ffffffffffffffff7f6001"
        )
    }

    @Test func txnRequestWithCompareOneofAndNestedOps() throws {
        let message = Etcdserverpb_TxnRequest.with {
            $0.compare = [
                .with { $0.result = .notEqual; $0.target = .value; $0.key = data("k"); $0.value = data("v") },
                // range_end is field 64: a two-byte tag after the oneof.
                .with {
                    $0.result = .greater; $0.target = .mod; $0.key = data("k2")
                    $0.modRevision = 5; $0.rangeEnd = data("k3")
                },
                // A oneof member set to its zero value is still written.
                .with { $0.result = .equal; $0.target = .version; $0.key = data("k"); $0.version = 0 },
                .with { $0.result = .less; $0.target = .lease; $0.key = data("l"); $0.lease = 99 },
                .with { $0.target = .create; $0.key = data("c"); $0.createRevision = 12 },
            ]
            $0.success = [
                .with { $0.requestPut = .with { $0.key = data("k"); $0.value = data("new") } },
                .with { $0.requestRange = .with { $0.key = data("k") } },
            ]
            $0.failure = [
                .with {
                    $0.requestTxn = .with {
                        $0.success = [
                            .with {
                                $0.requestDeleteRange = .with {
                                    $0.key = data("a"); $0.rangeEnd = data("b"); $0.prevKv = true
                                }
                            },
                        ]
                    }
                },
            ]
        }
        try expectGolden(
            message,
            text: #"compare { result: NOT_EQUAL target: VALUE key: "k" value: "v" } compare { result: GREATER target: MOD key: "k2" mod_revision: 5 range_end: "k3" } compare { result: EQUAL target: VERSION key: "k" version: 0 } compare { result: LESS target: LEASE key: "l" lease: 99 } compare { target: CREATE key: "c" create_revision: 12 } success { request_put { key: "k" value: "new" } } success { request_range { key: "k" } } failure { request_txn { success { request_delete_range { key: "a" range_end: "b" prev_kv: true } } } }"#,
            hex: "0a0a080310031a016b3a01760a0f080110021a026b3230058204026b330a051a016b20000a09080210041a016c40630a0710011a0163280c120a12080a016b12036e657712050a030a016b1a0e220c120a1a080a01611201621801"
        )
        #expect(message.compare[2].targetUnion == .version(0))
    }

    @Test func watchRequests() throws {
        // Repeated enums are packed in proto3: filters go out as one LEN field.
        try expectGolden(
            Etcdserverpb_WatchRequest.with {
                $0.createRequest = .with {
                    $0.key = data("foo")
                    $0.rangeEnd = data("fop")
                    $0.startRevision = 17
                    $0.progressNotify = true
                    $0.filters = [.noput, .nodelete]
                    $0.prevKv = true
                    $0.watchID = 3
                    $0.fragment = true
                }
            },
            text: #"create_request { key: "foo" range_end: "fop" start_revision: 17 progress_notify: true filters: NOPUT filters: NODELETE prev_kv: true watch_id: 3 fragment: true }"#,
            hex: "0a180a03666f6f1203666f70181120012a020001300138034001"
        )
        try expectGolden(
            Etcdserverpb_WatchRequest.with { $0.cancelRequest = .with { $0.watchID = 3 } },
            text: "cancel_request { watch_id: 3 }",
            hex: "12020803"
        )
        // An empty message selected in a oneof is written as a zero-length field.
        try expectGolden(
            Etcdserverpb_WatchRequest.with { $0.progressRequest = .init() },
            text: "progress_request { }",
            hex: "1a00"
        )
    }

    @Test func watchResponseWithEvents() throws {
        try expectGolden(
            Etcdserverpb_WatchResponse.with {
                $0.header = .with { $0.clusterID = 1; $0.memberID = 2; $0.revision = 9; $0.raftTerm = 3 }
                $0.watchID = 3
                $0.created = true
                $0.compactRevision = 4
                $0.cancelReason = "compacted"
                $0.fragment = true
                $0.events = [.with { $0.type = .put; $0.kv = .with { $0.key = data("a"); $0.value = data("b") } }]
            },
            text: #"header { cluster_id: 1 member_id: 2 revision: 9 raft_term: 3 } watch_id: 3 created: true compact_revision: 4 cancel_reason: "compacted" fragment: true events { type: PUT kv { key: "a" value: "b" } }"#,
            hex: "0a0808011002180920031003180128043209636f6d70616374656438015a0812060a01612a0162"
        )
    }

    @Test func leaseGrantRequest() throws {
        try expectGolden(
            Etcdserverpb_LeaseGrantRequest.with { $0.ttl = 60; $0.id = Self.bigLease },
            text: "TTL: 60 ID: 7587869384637432123",
            hex: "083c10bb8281cb8ce0e1a669"
        )
    }

    @Test func responseHeader() throws {
        try expectGolden(
            Etcdserverpb_ResponseHeader.with {
                $0.clusterID = 14_841_639_068_965_178_418
                $0.memberID = 10_276_657_743_932_975_437
                $0.revision = 123_456
                $0.raftTerm = 7
            },
            text: "cluster_id: 14841639068965178418 member_id: 10276657743932975437 revision: 123456 raft_term: 7",
            hex: "08b298eaf1948386fccd0110cdd2918bd2b881cf8e0118c0c4072007"
        )
    }

    @Test func mvccEvent() throws {
        try expectGolden(
            Mvccpb_Event.with {
                $0.type = .delete
                $0.kv = .with { $0.key = data("foo"); $0.modRevision = 9 }
                $0.prevKv = .with {
                    $0.key = data("foo"); $0.createRevision = 2; $0.modRevision = 8
                    $0.version = 3; $0.value = data("bar"); $0.lease = Self.bigLease
                }
            },
            text: #"type: DELETE kv { key: "foo" mod_revision: 9 } prev_kv { key: "foo" create_revision: 2 mod_revision: 8 version: 3 value: "bar" lease: 7587869384637432123 }"#,
            hex: "080112070a03666f6f18091a1a0a03666f6f1002180820032a0362617230bb8281cb8ce0e1a669"
        )
        // PUT is the zero value: no type field at all.
        try expectGolden(
            Mvccpb_Event.with {
                $0.kv = .with {
                    $0.key = data("x"); $0.createRevision = 5; $0.modRevision = 5; $0.version = 1; $0.value = data("y")
                }
            },
            text: #"kv { key: "x" create_revision: 5 mod_revision: 5 version: 1 value: "y" }"#,
            hex: "120c0a01781005180520012a0179"
        )
    }

    @Test func txnResponse() throws {
        try expectGolden(
            Etcdserverpb_TxnResponse.with {
                $0.header = .with { $0.revision = 10 }
                $0.succeeded = true
                $0.responses = [
                    .with { $0.responsePut = .with { $0.header = .with { $0.revision = 10 } } },
                    .with {
                        $0.responseRange = .with {
                            $0.header = .with { $0.revision = 10 }
                            $0.kvs = [.with {
                                $0.key = data("k"); $0.createRevision = 10; $0.modRevision = 10
                                $0.version = 1; $0.value = data("v")
                            }]
                            $0.more = true
                            $0.count = 2
                        }
                    },
                ]
            },
            text: #"header { revision: 10 } succeeded: true responses { response_put { header { revision: 10 } } } responses { response_range { header { revision: 10 } kvs { key: "k" create_revision: 10 mod_revision: 10 version: 1 value: "v" } more: true count: 2 } }"#,
            hex: "0a02180a10011a0612040a02180a1a180a160a02180a120c0a016b100a180a20012a017618012002"
        )
    }

    @Test func maintenanceAndCluster() throws {
        try expectGolden(
            Etcdserverpb_StatusResponse.with {
                $0.header = .with { $0.memberID = 5 }
                $0.version = "3.4.0"
                $0.dbSize = 24_576
                $0.leader = 5
                $0.raftIndex = 100
                $0.raftTerm = 2
                $0.raftAppliedIndex = 99
                $0.errors = ["memberID:5 alarm:NOSPACE "]
                $0.dbSizeInUse = 16_384
            },
            text: #"header { member_id: 5 } version: "3.4.0" dbSize: 24576 leader: 5 raftIndex: 100 raftTerm: 2 raftAppliedIndex: 99 errors: "memberID:5 alarm:NOSPACE " dbSizeInUse: 16384 isLearner: false"#,
            hex: "0a0210051205332e342e301880c001200528643002386342196d656d62657249443a3520616c61726d3a4e4f53504143452048808001"
        )
        try expectGolden(
            Etcdserverpb_MemberListResponse.with {
                $0.header = .with { $0.clusterID = 1 }
                $0.members = [
                    .with {
                        $0.id = 10_276_657_743_932_975_437
                        $0.name = "n1"
                        $0.peerUrls = ["http://127.0.0.1:2380"]
                        $0.clientUrls = ["http://127.0.0.1:2379", "http://10.0.0.1:2379"]
                    },
                    .with { $0.id = 2; $0.isLearner = true; $0.peerUrls = ["http://127.0.0.2:2380"] },
                ]
            },
            text: #"header { cluster_id: 1 } members { ID: 10276657743932975437 name: "n1" peerURLs: "http://127.0.0.1:2380" clientURLs: "http://127.0.0.1:2379" clientURLs: "http://10.0.0.1:2379" } members { ID: 2 isLearner: true peerURLs: "http://127.0.0.2:2380" }"#,
            hex: "0a020801125308cdd2918bd2b881cf8e0112026e311a15687474703a2f2f3132372e302e302e313a323338302215687474703a2f2f3132372e302e302e313a323337392214687474703a2f2f31302e302e302e313a32333739121b08021a15687474703a2f2f3132372e302e302e323a323338302801"
        )
        try expectGolden(
            Etcdserverpb_AlarmResponse.with {
                $0.alarms = [
                    .with { $0.memberID = 5; $0.alarm = .nospace },
                    .with { $0.memberID = 6; $0.alarm = .corrupt },
                ]
            },
            text: "alarms { memberID: 5 alarm: NOSPACE } alarms { memberID: 6 alarm: CORRUPT }",
            hex: "120408051001120408061002"
        )
    }

    @Test func authRoleGrantPermission() throws {
        try expectGolden(
            Etcdserverpb_AuthRoleGrantPermissionRequest.with {
                $0.name = "reader"
                $0.perm = .with { $0.permType = .readwrite; $0.key = data("/a"); $0.rangeEnd = data("/b") }
            },
            text: #"name: "reader" perm { permType: READWRITE key: "/a" range_end: "/b" }"#,
            hex: "0a06726561646572120a080212022f611a022f62"
        )
    }

    @Test func raftCommand() throws {
        try expectGolden(
            Ensemble_V1_Command.with {
                $0.txn = .with {
                    $0.compare = [.with { $0.key = data("k"); $0.version = 0 }]
                    $0.success = [.with { $0.requestPut = .with { $0.key = data("k"); $0.value = data("v") } }]
                }
                $0.requestID = .max
            },
            text: #"txn { compare { key: "k" version: 0 } success { request_put { key: "k" value: "v" } } } request_id: 18446744073709551615"#,
            hex: "22110a051a016b2000120812060a016b12017678ffffffffffffffffff01"
        )
        try expectGolden(
            Ensemble_V1_Command.with {
                $0.leaseCheckpoints = .with {
                    $0.checkpoints = [
                        .with { $0.id = 1; $0.remainingTtl = 30 },
                        .with { $0.id = 2; $0.remainingTtl = -5 },
                    ]
                }
                $0.requestID = 1
            },
            text: "lease_checkpoints { checkpoints { id: 1 remaining_ttl: 30 } checkpoints { id: 2 remaining_ttl: -5 } } request_id: 1",
            hex: "42150a040801101e0a0d080210fbffffffffffffffff017801"
        )
    }

    @Test func healthCheckResponse() throws {
        try expectGolden(
            Grpc_Health_V1_HealthCheckResponse.with { $0.status = .serviceUnknown },
            text: "status: SERVICE_UNKNOWN",
            hex: "0803"
        )
    }

    /// Names and numbers that etcd clients see in errors and gRPC paths.
    @Test func protoNamesMatchEtcd() {
        #expect(Etcdserverpb_PutRequest.protoMessageName == "etcdserverpb.PutRequest")
        #expect(Etcdserverpb_RequestOp.protoMessageName == "etcdserverpb.RequestOp")
        #expect(Mvccpb_KeyValue.protoMessageName == "mvccpb.KeyValue")
        #expect(Authpb_Permission.protoMessageName == "authpb.Permission")
        #expect(Grpc_Health_V1_HealthCheckRequest.protoMessageName == "grpc.health.v1.HealthCheckRequest")
        #expect(Etcdserverpb_AlarmType.nospace.rawValue == 1)
        #expect(Etcdserverpb_Compare.CompareResult.notEqual.rawValue == 3)
        #expect(Etcdserverpb_Compare.CompareTarget.lease.rawValue == 4)
        #expect(Etcdserverpb_RangeRequest.SortTarget.value.rawValue == 4)
    }
}
