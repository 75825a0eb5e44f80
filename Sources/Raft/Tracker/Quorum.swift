/// Majority arithmetic over the voters of one configuration (thesis §4: with
/// single-server changes any two majorities of adjacent configurations overlap).
enum Quorum {
    /// Votes needed out of `voters`.
    static func majority(of voters: Int) -> Int { voters / 2 + 1 }

    /// The largest index replicated on a majority: sort matches descending and
    /// take the one at position majority - 1.
    static func committedIndex(matches: [UInt64]) -> UInt64 {
        guard !matches.isEmpty else { return 0 }
        let sorted = matches.sorted(by: >)
        return sorted[majority(of: sorted.count) - 1]
    }

    enum VoteResult: Equatable { case pending, won, lost }

    /// Outcome of an election given the votes received so far.
    static func voteResult(voters: [NodeID], votes: [NodeID: Bool]) -> VoteResult {
        var granted = 0
        var rejected = 0
        for voter in voters {
            switch votes[voter] {
            case true?: granted += 1
            case false?: rejected += 1
            case nil: break
            }
        }
        let needed = majority(of: voters.count)
        if granted >= needed { return .won }
        if rejected > voters.count - needed { return .lost }
        return .pending
    }
}
