import Raft

/// The peer wire format for Raft messages: a frame is
/// `length u32 | version u8 | body`, integers little-endian, `length` counting
/// the version byte and the body. Body fields, in order:
///
/// ```
/// kind u8 | from u64 | to u64 | term u64 | logTerm u64 | index u64 | commit u64
/// | reject u8 | rejectHint u64 | contextLength u32 | context
/// | entryCount u32 | { term u64 | index u64 | kind u8 | dataLength u32 | data }*
/// | hasSnapshot u8 | [ index u64 | term u64 | voterCount u32 | voters u64*
///                    | learnerCount u32 | learners u64* | dataLength u64 | data ]
/// ```
///
/// TCP already protects the bytes; the decoder's job is to refuse anything
/// malformed — from a buggy or hostile peer — with an error, never a crash or an
/// unbounded allocation.
public enum MessageCodec {
    public static let version: UInt8 = 1
    /// Frames larger than this are refused (a snapshot bigger than this must be
    /// sent in chunks).
    public static let defaultMaxFrame = 64 << 20

    public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
        public let reason: String
        public var description: String { "malformed peer frame: \(reason)" }
    }

    /// Appends one framed message to `out`.
    public static func encode(_ m: Message, into out: inout [UInt8]) {
        let start = out.count
        out.append(contentsOf: [0, 0, 0, 0])
        out.append(version)
        out.append(m.kind.rawValue)
        for v in [m.from, m.to, m.term, m.logTerm, m.index, m.commit] { put64(v, &out) }
        out.append(m.reject ? 1 : 0)
        put64(m.rejectHint, &out)
        put32(UInt32(truncatingIfNeeded: m.context.count), &out)
        out.append(contentsOf: m.context)
        put32(UInt32(truncatingIfNeeded: m.entries.count), &out)
        for e in m.entries {
            put64(e.term, &out)
            put64(e.index, &out)
            out.append(e.kind.rawValue)
            put32(UInt32(truncatingIfNeeded: e.data.count), &out)
            out.append(contentsOf: e.data)
        }
        if let s = m.snapshot {
            out.append(1)
            put64(s.metadata.index, &out)
            put64(s.metadata.term, &out)
            put32(UInt32(truncatingIfNeeded: s.metadata.confState.voters.count), &out)
            for v in s.metadata.confState.voters { put64(v, &out) }
            put32(UInt32(truncatingIfNeeded: s.metadata.confState.learners.count), &out)
            for l in s.metadata.confState.learners { put64(l, &out) }
            put64(UInt64(s.data.count), &out)
            out.append(contentsOf: s.data)
        } else {
            out.append(0)
        }
        let length = UInt32(truncatingIfNeeded: out.count - start - 4)
        for i in 0..<4 { out[start + i] = UInt8(truncatingIfNeeded: length >> (8 * UInt32(i))) }
    }

    public static func encode(_ m: Message) -> [UInt8] {
        var out: [UInt8] = []
        encode(m, into: &out)
        return out
    }

    /// The version byte of a chunk frame: `version u8 (0xFD) | total u64 |
    /// offset u64 | bytes`. A message whose body is larger than one chunk (a
    /// snapshot) travels as consecutive chunk frames of its body, which the
    /// receiver reassembles; every frame stays below the frame limit.
    public static let chunkVersion: UInt8 = 0xFD
    /// Bytes of message body per chunk frame.
    public static let defaultChunk = 8 << 20

    /// Appends `m` as one frame, or as chunk frames if its body exceeds `chunk`.
    public static func encodeFrames(_ m: Message, chunk: Int = defaultChunk, into out: inout [UInt8]) {
        guard (m.snapshot?.data.count ?? 0) >= chunk / 2 else {
            let start = out.count
            encode(m, into: &out)
            if out.count - start - 4 <= chunk { return }
            // Over a chunk without a large snapshot (many entries): split below.
            let frame = Array(out[(start + 4)...])
            out.removeSubrange(start...)
            return appendChunks(of: frame[...], chunk: chunk, into: &out)
        }
        // A snapshot: encoded once aside, then copied out in chunks (not
        // encoded in place, copied aside and copied back).
        var frame: [UInt8] = []
        encode(m, into: &frame)
        guard frame.count - 4 > chunk else { return out.append(contentsOf: frame) }
        out.reserveCapacity(out.count + frame.count + (frame.count / chunk + 1) * 21)
        appendChunks(of: frame[4...], chunk: chunk, into: &out)
    }

    /// `frame` (a frame body, without its length) as chunk frames.
    private static func appendChunks(of frame: ArraySlice<UInt8>, chunk: Int, into out: inout [UInt8]) {
        let body = frame.count
        var offset = 0
        while offset < body {
            let n = min(chunk, body - offset)
            put32(UInt32(1 + 8 + 8 + n), &out)
            out.append(chunkVersion)
            put64(UInt64(body), &out)
            put64(UInt64(offset), &out)
            let from = frame.startIndex + offset
            out.append(contentsOf: frame[from..<(from + n)])
            offset += n
        }
    }

    /// Decodes one frame body (version byte onwards).
    public static func decodeBody(_ bytes: ArraySlice<UInt8>) throws(DecodeError) -> Message {
        var r = Reader(bytes: bytes)
        let v = try r.u8("version")
        guard v == version else { throw DecodeError(reason: "unsupported version \(v)") }
        let rawKind = try r.u8("kind")
        guard let kind = MessageKind(rawValue: rawKind) else { throw DecodeError(reason: "unknown kind \(rawKind)") }
        var m = Message(kind: kind)
        m.from = try r.u64("from")
        m.to = try r.u64("to")
        m.term = try r.u64("term")
        m.logTerm = try r.u64("logTerm")
        m.index = try r.u64("index")
        m.commit = try r.u64("commit")
        m.reject = try r.u8("reject") != 0
        m.rejectHint = try r.u64("rejectHint")
        m.context = try r.bytes(Int(try r.u32("context length")), "context")
        let entryCount = Int(try r.u32("entry count"))
        // Each entry takes at least 21 bytes: refuse counts the frame cannot hold.
        guard entryCount <= r.remaining / 21 else { throw DecodeError(reason: "entry count \(entryCount) exceeds the frame") }
        m.entries.reserveCapacity(entryCount)
        for _ in 0..<entryCount {
            let term = try r.u64("entry term")
            let index = try r.u64("entry index")
            let rawEntryKind = try r.u8("entry kind")
            guard let entryKind = Entry.Kind(rawValue: rawEntryKind) else {
                throw DecodeError(reason: "unknown entry kind \(rawEntryKind)")
            }
            let data = try r.bytes(Int(try r.u32("entry length")), "entry data")
            m.entries.append(Entry(term: term, index: index, kind: entryKind, data: data))
        }
        switch try r.u8("snapshot flag") {
        case 0:
            break
        case 1:
            let index = try r.u64("snapshot index")
            let term = try r.u64("snapshot term")
            let voters = try r.ids("voters")
            let learners = try r.ids("learners")
            let length = try r.u64("snapshot length")
            guard length <= UInt64(r.remaining) else { throw DecodeError(reason: "snapshot length exceeds the frame") }
            let data = try r.bytes(Int(length), "snapshot data")
            m.snapshot = Snapshot(
                metadata: SnapshotMetadata(index: index, term: term, confState: ConfState(voters: voters, learners: learners)),
                data: data)
        default:
            throw DecodeError(reason: "bad snapshot flag")
        }
        guard r.remaining == 0 else { throw DecodeError(reason: "\(r.remaining) trailing bytes") }
        return m
    }

    private static func put64(_ v: UInt64, _ out: inout [UInt8]) {
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    private static func put32(_ v: UInt32, _ out: inout [UInt8]) {
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
    }

    struct Reader {
        let bytes: ArraySlice<UInt8>
        var position: Int

        init(bytes: ArraySlice<UInt8>) {
            self.bytes = bytes
            self.position = bytes.startIndex
        }

        var remaining: Int { bytes.endIndex - position }

        mutating func need(_ n: Int, _ what: String) throws(DecodeError) {
            if n < 0 || remaining < n { throw DecodeError(reason: "truncated \(what)") }
        }

        mutating func u8(_ what: String) throws(DecodeError) -> UInt8 {
            try need(1, what)
            defer { position += 1 }
            return bytes[position]
        }

        mutating func u32(_ what: String) throws(DecodeError) -> UInt32 {
            try need(4, what)
            var v: UInt32 = 0
            for i in 0..<4 { v |= UInt32(bytes[position + i]) << (8 * UInt32(i)) }
            position += 4
            return v
        }

        mutating func u64(_ what: String) throws(DecodeError) -> UInt64 {
            try need(8, what)
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
            position += 8
            return v
        }

        mutating func bytes(_ n: Int, _ what: String) throws(DecodeError) -> [UInt8] {
            try need(n, what)
            defer { position += n }
            return Array(bytes[position..<(position + n)])
        }

        mutating func ids(_ what: String) throws(DecodeError) -> [NodeID] {
            let count = Int(try u32("\(what) count"))
            guard count <= remaining / 8 else { throw DecodeError(reason: "\(what) count exceeds the frame") }
            var ids: [NodeID] = []
            ids.reserveCapacity(count)
            for _ in 0..<count { ids.append(try u64(what)) }
            return ids
        }
    }
}

/// The first frame on a connection a member opens: who it is and the peer
/// address it is reached at, so a member that does not know it yet (one just
/// added, whose directory is still empty) can answer. Body: `version u8
/// (0xFE) | id u64 | port u16 | hostLength u16 | host (UTF-8)`.
public struct Hello: Sendable, Hashable {
    public static let version: UInt8 = 0xFE
    public var id: NodeID
    public var host: String
    public var port: Int

    public init(id: NodeID, host: String, port: Int) {
        self.id = id
        self.host = host
        self.port = port
    }

    public func encoded() -> [UInt8] {
        let host = Array(self.host.utf8.prefix(1024))
        var body: [UInt8] = [Self.version]
        withUnsafeBytes(of: id.littleEndian) { body.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt16(truncatingIfNeeded: port).littleEndian) { body.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt16(host.count).littleEndian) { body.append(contentsOf: $0) }
        body += host
        var frame: [UInt8] = []
        withUnsafeBytes(of: UInt32(body.count).littleEndian) { frame.append(contentsOf: $0) }
        return frame + body
    }

    static func decode(_ body: ArraySlice<UInt8>) throws(MessageCodec.DecodeError) -> Hello {
        let bytes = Array(body)
        guard bytes.count >= 13, bytes[0] == version else { throw MessageCodec.DecodeError(reason: "short hello") }
        var id: UInt64 = 0
        for i in 0..<8 { id |= UInt64(bytes[1 + i]) << (8 * UInt64(i)) }
        let port = Int(bytes[9]) | Int(bytes[10]) << 8
        let length = Int(bytes[11]) | Int(bytes[12]) << 8
        guard bytes.count == 13 + length else { throw MessageCodec.DecodeError(reason: "hello length mismatch") }
        return Hello(id: id, host: String(decoding: bytes[13...], as: UTF8.self), port: port)
    }
}

/// What a frame carries.
public enum Frame: Sendable, Hashable {
    case message(Message)
    case hello(Hello)
    /// "You were removed from the cluster": a member's answer to the hello of
    /// one its directory lists as removed (etcd's peers answer such a member
    /// HTTP 410). Body: the single byte ``removedNotice``.
    case removed

    public static let removedNotice: UInt8 = 0xFC

    /// The removed notice, framed.
    public static var removedFrame: [UInt8] { [1, 0, 0, 0, removedNotice] }
}

/// Splits a byte stream into frames. Feed it whatever the socket delivered;
/// it returns every complete message and keeps the rest for later.
public struct FrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    public let maxFrame: Int
    /// The largest message reassembled from chunks (a snapshot).
    public let maxMessage: Int
    /// A chunked message being reassembled, and its announced size.
    private var assembling: [UInt8] = []
    private var assemblingTotal = 0

    public init(maxFrame: Int = MessageCodec.defaultMaxFrame, maxMessage: Int = 16 << 30) {
        self.maxFrame = maxFrame
        self.maxMessage = maxMessage
    }

    /// Bytes received but not yet part of a complete frame.
    public var buffered: Int { buffer.count }

    /// Decodes every complete frame in `bytes` (plus what was buffered). A
    /// malformed or oversized frame is an error: the connection should close.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(MessageCodec.DecodeError) -> [Message] {
        try feedFrames(bytes).compactMap { frame in
            if case let .message(message) = frame { return message }
            return nil
        }
    }

    /// ``feed(_:)`` with hellos too.
    public mutating func feedFrames(_ bytes: some Collection<UInt8>) throws(MessageCodec.DecodeError) -> [Frame] {
        buffer.append(contentsOf: bytes)
        var messages: [Frame] = []
        var start = 0
        while buffer.count - start >= 4 {
            var length = 0
            for i in 0..<4 { length |= Int(buffer[start + i]) << (8 * i) }
            guard length > 0, length <= maxFrame else {
                throw MessageCodec.DecodeError(reason: "frame length \(length) outside 1...\(maxFrame)")
            }
            guard buffer.count - start - 4 >= length else { break }
            let body = buffer[(start + 4)..<(start + 4 + length)]
            if body.first == Frame.removedNotice && body.count == 1 {
                messages.append(.removed)
            } else if body.first == Hello.version {
                messages.append(.hello(try Hello.decode(body)))
            } else if body.first == MessageCodec.chunkVersion {
                if let message = try reassemble(body) { messages.append(.message(message)) }
            } else {
                messages.append(.message(try MessageCodec.decodeBody(body)))
            }
            start += 4 + length
        }
        if start > 0 { buffer.removeFirst(start) }
        return messages
    }

    /// Adds one chunk; returns the message once its last chunk arrived. Chunks
    /// must come in order and add up to the announced size.
    private mutating func reassemble(_ body: ArraySlice<UInt8>) throws(MessageCodec.DecodeError) -> Message? {
        // Read in place: a chunk is megabytes, and this runs on an event loop.
        guard body.count >= 17 else { throw MessageCodec.DecodeError(reason: "short chunk") }
        let start = body.startIndex
        var total = 0
        var offset = 0
        for i in 0..<8 {
            total |= Int(body[start + 1 + i]) << (8 * i)
            offset |= Int(body[start + 9 + i]) << (8 * i)
        }
        let data = body[(start + 17)...]
        guard total > 0, total <= maxMessage else {
            throw MessageCodec.DecodeError(reason: "chunked message of \(total) bytes outside 1...\(maxMessage)")
        }
        if offset == 0 {
            assembling = []
            // Room for the message up front (fewer copies as it grows), up to
            // one frame — what a sender can make a receiver hold anyway: the
            // announced size is only the sender's word.
            assembling.reserveCapacity(min(total, maxFrame))
            assemblingTotal = total
        }
        guard total == assemblingTotal, offset == assembling.count, offset + data.count <= total else {
            throw MessageCodec.DecodeError(reason: "chunk at \(offset) out of sequence (have \(assembling.count) of \(assemblingTotal))")
        }
        assembling.append(contentsOf: data)
        guard assembling.count == total else { return nil }
        defer {
            assembling = []
            assemblingTotal = 0
        }
        return try MessageCodec.decodeBody(assembling[...])
    }
}
