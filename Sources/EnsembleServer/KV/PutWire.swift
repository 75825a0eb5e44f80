import EnsembleAPI
import KV

/// A put read straight from the protobuf wire bytes of an
/// `etcdserverpb.PutRequest`, and the Raft log entry that carries it: the
/// commonest write skips SwiftProtobuf's message, its `Data` fields and the
/// re-encoding into an `ensemble.v1.Command`.
///
/// Contract: where this reader returns a value, SwiftProtobuf decodes the same
/// bytes to the same request (`PutWireTests` checks it on random inputs). It
/// returns nil for anything less usual (a known field in another wire type,
/// groups, a varint past 64 bits, truncation), and the caller falls back to
/// SwiftProtobuf, which stays the judge of what those bytes mean. Unknown
/// fields are skipped, as protobuf skips them.
struct PutWire: Equatable {
    var key: Range<Int> = 0..<0
    var value: Range<Int> = 0..<0
    var lease: Int64 = 0
    var prevKV = false
    var ignoreValue = false
    var ignoreLease = false

    /// Reads the PutRequest in `bytes[range]`; later occurrences of a field
    /// replace earlier ones, as protobuf's do.
    init?(_ bytes: [UInt8], in range: Range<Int>) {
        var reader = ProtoWireReader(bytes, in: range)
        while !reader.isAtEnd {
            guard let (field, wireType) = reader.tag() else { return nil }
            switch (field, wireType) {
            case (1, .lengthDelimited): guard let r = reader.lengthDelimited() else { return nil }; key = r
            case (2, .lengthDelimited): guard let r = reader.lengthDelimited() else { return nil }; value = r
            case (3, .varint): guard let v = reader.varint() else { return nil }; lease = Int64(bitPattern: v)
            case (4, .varint): guard let v = reader.varint() else { return nil }; prevKV = v != 0
            case (5, .varint): guard let v = reader.varint() else { return nil }; ignoreValue = v != 0
            case (6, .varint): guard let v = reader.varint() else { return nil }; ignoreLease = v != 0
            case (1...6, _): return nil
            default: guard reader.skip(wireType) else { return nil }
            }
        }
    }

    /// The state machine's request, its byte fields copied out of `bytes`.
    func request(in bytes: [UInt8]) -> PutRequest {
        var request = PutRequest(key: Array(bytes[key]), value: Array(bytes[value]), lease: lease)
        request.prevKV = prevKV
        request.ignoreValue = ignoreValue
        request.ignoreLease = ignoreLease
        return request
    }

    /// `ensemble.v1.Command` field 2 (`put`), length-delimited.
    private static let commandPutTag: UInt8 = 2 << 3 | 2

    /// The log entry for the PutRequest `request`: an `ensemble.v1.Command`
    /// whose `put` holds those bytes as they came. It decodes to the request
    /// the client sent; unlike a re-encoding it keeps repeated fields, zero
    /// fields written out and long varint forms (never more than the request
    /// size limit already allows).
    static func commandEntry(embedding request: [UInt8]) -> [UInt8] {
        var entry: [UInt8] = []
        entry.reserveCapacity(request.count + 11)
        entry.append(commandPutTag)
        ProtoWire.appendVarint(UInt64(request.count), to: &entry)
        entry.append(contentsOf: request)
        return entry
    }

    /// The put in a log entry that is a `Command` holding only a `put` (and
    /// perhaps a `request_id`); nil for every other command, and for anything
    /// ``init(_:in:)`` leaves to SwiftProtobuf.
    static func fromCommand(_ entry: [UInt8]) -> PutRequest? {
        var reader = ProtoWireReader(entry, in: entry.indices)
        var put: PutWire?
        while !reader.isAtEnd {
            guard let (field, wireType) = reader.tag() else { return nil }
            switch (field, wireType) {
            case (2, .lengthDelimited):
                // A second `put` would merge into the first: SwiftProtobuf's job.
                guard put == nil, let range = reader.lengthDelimited(), let parsed = PutWire(entry, in: range) else { return nil }
                put = parsed
            case (15, .varint):
                guard reader.varint() != nil else { return nil }
            default:
                return nil
            }
        }
        return put?.request(in: entry)
    }
}

extension PutWire {
    /// The `PutResponse` for `response`: written here when it is only a
    /// header (the bytes SwiftProtobuf would write, fields in number order,
    /// zeros left out, the header itself always there), by SwiftProtobuf when it carries a previous value.
    static func response(_ response: PutResponse, _ headers: @escaping @Sendable () -> HeaderSource) -> GRPCResponse {
        guard response.previous == nil else { return GRPCResponse { Etcdserverpb_PutResponse(response, headers()) } }
        let revision = UInt64(bitPattern: response.revision)
        return GRPCResponse(encoded: {
            let h = headers()
            let headerSize = ProtoWire.fieldSize(varint: h.clusterID) + ProtoWire.fieldSize(varint: h.memberID)
                + ProtoWire.fieldSize(varint: revision) + ProtoWire.fieldSize(varint: h.raftTerm)
            var bytes: [UInt8] = []
            bytes.reserveCapacity(2 + headerSize)
            bytes.append(1 << 3 | 2)  // PutResponse.header
            ProtoWire.appendVarint(UInt64(headerSize), to: &bytes)
            ProtoWire.appendField(1, varint: h.clusterID, to: &bytes)
            ProtoWire.appendField(2, varint: h.memberID, to: &bytes)
            ProtoWire.appendField(3, varint: revision, to: &bytes)
            ProtoWire.appendField(4, varint: h.raftTerm, to: &bytes)
            return bytes
        })
    }
}
