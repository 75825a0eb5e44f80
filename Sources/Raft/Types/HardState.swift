/// The state that must be on stable storage before any message that depends on it
/// is sent (Raft paper, Figure 2: currentTerm and votedFor; we also keep `commit`
/// so a restart never re-learns less than it had applied).
public struct HardState: Sendable, Hashable {
    public var term: UInt64
    /// The candidate voted for in `term`, or ``NodeID/none``.
    public var vote: NodeID
    /// Highest index known committed. Invariant: `commit <= lastIndex` of the log.
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: NodeID = .none, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    public static let empty = HardState()
}
