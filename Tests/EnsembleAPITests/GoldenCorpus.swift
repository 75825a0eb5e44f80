import EnsembleAPI
import SwiftProtobuf

/// The golden encodings of WireGoldenTests, by message type, reused as seeds
/// by the round-trip and fuzz tests.
enum GoldenCorpus {
    static let cases: [(type: any SwiftProtobuf.Message.Type, hex: String)] = [
        (Etcdserverpb_PutRequest.self, "0a03666f6f120362617218bb8281cb8ce0e1a66920013001"),
        (Etcdserverpb_PutRequest.self, "0a036b00ff2801"),
        (Etcdserverpb_RangeRequest.self, "0a0161120100180a202a280230033801400150036864"),
        (Etcdserverpb_RangeRequest.self, "0a0a2f72656769737472792f120a2f72656769737472793020ffffffffffffffffff0128013004480158ffffffffffffffff7f6001"),
        (Etcdserverpb_TxnRequest.self, "0a0a080310031a016b3a01760a0f080110021a026b3230058204026b330a051a016b20000a09080210041a016c40630a0710011a0163280c120a12080a016b12036e657712050a030a016b1a0e220c120a1a080a01611201621801"),
        (Etcdserverpb_WatchRequest.self, "0a180a03666f6f1203666f70181120012a020001300138034001"),
        (Etcdserverpb_WatchRequest.self, "12020803"),
        (Etcdserverpb_WatchRequest.self, "1a00"),
        (Etcdserverpb_WatchResponse.self, "0a0808011002180920031003180128043209636f6d70616374656438015a0812060a01612a0162"),
        (Etcdserverpb_LeaseGrantRequest.self, "083c10bb8281cb8ce0e1a669"),
        (Etcdserverpb_ResponseHeader.self, "08b298eaf1948386fccd0110cdd2918bd2b881cf8e0118c0c4072007"),
        (Mvccpb_Event.self, "080112070a03666f6f18091a1a0a03666f6f1002180820032a0362617230bb8281cb8ce0e1a669"),
        (Mvccpb_Event.self, "120c0a01781005180520012a0179"),
        (Etcdserverpb_TxnResponse.self, "0a02180a10011a0612040a02180a1a180a160a02180a120c0a016b100a180a20012a017618012002"),
        (Etcdserverpb_StatusResponse.self, "0a0210051205332e342e301880c001200528643002386342196d656d62657249443a3520616c61726d3a4e4f53504143452048808001"),
        (Etcdserverpb_MemberListResponse.self, "0a020801125308cdd2918bd2b881cf8e0112026e311a15687474703a2f2f3132372e302e302e313a323338302215687474703a2f2f3132372e302e302e313a323337392214687474703a2f2f31302e302e302e313a32333739121b08021a15687474703a2f2f3132372e302e302e323a323338302801"),
        (Etcdserverpb_AlarmResponse.self, "120408051001120408061002"),
        (Etcdserverpb_AuthRoleGrantPermissionRequest.self, "0a06726561646572120a080212022f611a022f62"),
        (Ensemble_V1_Command.self, "22110a051a016b2000120812060a016b12017678ffffffffffffffffff01"),
        (Ensemble_V1_Command.self, "42150a040801101e0a0d080210fbffffffffffffffff017801"),
        (Grpc_Health_V1_HealthCheckResponse.self, "0803"),
    ]

    /// Message types the fuzz test throws random bytes at: the request types
    /// a server decodes from clients, plus the Raft command and a few responses.
    static let fuzzTypes: [any SwiftProtobuf.Message.Type] = [
        Etcdserverpb_RangeRequest.self, Etcdserverpb_PutRequest.self, Etcdserverpb_DeleteRangeRequest.self,
        Etcdserverpb_TxnRequest.self, Etcdserverpb_CompactionRequest.self, Etcdserverpb_WatchRequest.self,
        Etcdserverpb_LeaseGrantRequest.self, Etcdserverpb_LeaseRevokeRequest.self,
        Etcdserverpb_LeaseKeepAliveRequest.self, Etcdserverpb_LeaseTimeToLiveRequest.self,
        Etcdserverpb_MemberAddRequest.self, Etcdserverpb_AlarmRequest.self, Etcdserverpb_HashKVRequest.self,
        Etcdserverpb_AuthenticateRequest.self, Etcdserverpb_AuthRoleGrantPermissionRequest.self,
        Etcdserverpb_TxnResponse.self, Etcdserverpb_WatchResponse.self, Mvccpb_Event.self,
        Authpb_Role.self, Ensemble_V1_Command.self, Grpc_Health_V1_HealthCheckRequest.self,
    ]
}

/// Decodes `bytes` as `M`, re-encodes, decodes again and reports whether the
/// two decoded values agree. Throws whatever the first decode throws.
func decodeIsStable<M: SwiftProtobuf.Message>(_: M.Type, _ bytes: [UInt8]) throws -> Bool {
    let first = try M(serializedBytes: bytes)
    let again: [UInt8] = try first.serializedBytes()
    let second = try M(serializedBytes: again)
    return first.isEqualTo(message: second)
}

/// Decodes `bytes` as `M` and re-encodes it.
func reencode<M: SwiftProtobuf.Message>(_: M.Type, _ bytes: [UInt8]) throws -> [UInt8] {
    try M(serializedBytes: bytes).serializedBytes()
}
