/// The kinds of message Raft members exchange (Raft paper Figure 2, thesis ch. 3, 4, 6, 9).
public enum MessageKind: UInt8, Sendable, CaseIterable {
    /// AppendEntries: `index`/`logTerm` are prevLogIndex/prevLogTerm.
    case append = 1
    /// Reply to `.append` or `.snapshot`; `index` is the highest index now matching,
    /// or on `reject` the rejected prevLogIndex with `rejectHint`/`logTerm` as a hint.
    case appendResponse = 2
    /// RequestVote: `index`/`logTerm` are the candidate's last log index/term.
    case vote = 3
    case voteResponse = 4
    /// Pre-vote (thesis §9.6): asks whether a vote *would* be granted at `term`.
    case preVote = 5
    case preVoteResponse = 6
    /// Leader heartbeat: `commit` is what the follower may commit; `context` carries
    /// a ReadIndex round number.
    case heartbeat = 7
    case heartbeatResponse = 8
    /// InstallSnapshot: `snapshot` is set.
    case snapshot = 9
    /// Leader transfer (thesis §3.10): start an election now, ignoring leases.
    case timeoutNow = 10
    /// A follower forwards a ReadIndex request; `context` identifies it.
    case readIndex = 11
    /// The leader answers a forwarded ReadIndex: `index` is the read index.
    case readIndexResponse = 12
    /// A follower forwards proposals to its leader (thesis §6.2): `entries`
    /// carry the data (term and index unset); `context` identifies the batch.
    case propose = 13
    /// The leader's answer to `.propose`: the entries were appended from
    /// `index` on in term `logTerm`, or, with `reject`, were not taken.
    case proposeResponse = 14
}

/// A message between members. One flat struct, as in etcd-io/raft, so the
/// transport encodes one shape; fields a kind does not use are zero/empty.
public struct Message: Sendable, Hashable {
    public var kind: MessageKind
    public var from: NodeID
    public var to: NodeID
    public var term: UInt64
    public var logTerm: UInt64
    public var index: UInt64
    public var entries: [Entry]
    public var commit: UInt64
    public var reject: Bool
    public var rejectHint: UInt64
    public var snapshot: Snapshot?
    public var context: [UInt8]

    public init(
        kind: MessageKind, from: NodeID = .none, to: NodeID = .none, term: UInt64 = 0,
        logTerm: UInt64 = 0, index: UInt64 = 0, entries: [Entry] = [], commit: UInt64 = 0,
        reject: Bool = false, rejectHint: UInt64 = 0, snapshot: Snapshot? = nil, context: [UInt8] = []
    ) {
        self.kind = kind
        self.from = from
        self.to = to
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.reject = reject
        self.rejectHint = rejectHint
        self.snapshot = snapshot
        self.context = context
    }
}

extension Message {
    /// A vote or pre-vote carrying this context was started by a leader transfer
    /// and must not be ignored by members inside their leader lease.
    public static let transferContext: [UInt8] = Array("transfer".utf8)
}
