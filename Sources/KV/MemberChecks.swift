/// The checks a membership change passes before it is proposed, with etcd
/// 3.4's errors and order: the directory's own rules (a peer URL used once,
/// one learner at a time, only learners promoted) and etcd's strict
/// reconfiguration checks (`--strict-reconfig-check`, on by default), which
/// refuse a change that would leave fewer started voters than a quorum. A
/// member counts as started once it has published its name (bootstrap
/// members have theirs from `--initial-cluster`).
extension MemberTable {
    /// Adding a member with `peerURLs`.
    public func checkAdd(peerURLs: [String], isLearner: Bool) throws(MemberError) {
        if !isLearner && !readyToAddVoter { throw .notEnoughStartedMembers }
        if member(usingPeerURLs: peerURLs) != nil { throw .peerURLExists }
        // etcd 3.4 allows one learner at a time.
        if isLearner && members.values.contains(where: \.isLearner) { throw .tooManyLearners }
    }

    /// Removing member `id`, asked on member `local`; `active` are the members
    /// the leader has heard from lately (etcd: connected within its health
    /// interval). A learner may always go; a voter not while the started
    /// voters left would be under quorum, nor while the voters still
    /// reachable would be (a voter that is down itself may go).
    public func checkRemove(_ id: UInt64, local: UInt64, active: Set<UInt64>) throws(MemberError) {
        let target = members[id]
        if target?.isLearner == true { return }
        let others = voters.filter { $0.id != id }
        if others.filter(\.isStarted).count < others.count / 2 + 1 { throw .notEnoughStartedMembers }
        guard let target else { throw .notFound }
        if target.id != local && !active.contains(target.id) { return }
        let up = voters.filter { $0.id == local || active.contains($0.id) }.count
        if up - 1 < 1 + (voters.count - 1) / 2 { throw .unhealthy }
    }

    /// Promoting learner `id` (the learner counts as started).
    public func checkPromote(_ id: UInt64) throws(MemberError) {
        guard let member = members[id] else { throw .notFound }
        guard member.isLearner else { throw .notLearner }
        let all = voters.count + 1
        if voters.filter(\.isStarted).count + 1 < all / 2 + 1 { throw .notEnoughStartedMembers }
    }

    /// Whether a voter may join: the started voters must still make a quorum
    /// of the larger membership (except when a second member joins a
    /// one-member cluster, etcd's restore path).
    var readyToAddVoter: Bool {
        let started = voters.filter(\.isStarted).count
        let all = voters.count + 1
        if started == 1 && all == 2 { return true }
        return started >= all / 2 + 1
    }

    var voters: [Member] { members.values.filter { !$0.isLearner } }
}

extension Member {
    /// Whether the member has started and published its name.
    public var isStarted: Bool { !name.isEmpty }
}
