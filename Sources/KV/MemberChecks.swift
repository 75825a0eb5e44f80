/// The checks a membership change passes before it is proposed, with etcd
/// 3.4's errors and order: the directory's own rules (a peer URL used once,
/// one learner at a time, only learners promoted) and etcd's strict
/// reconfiguration checks (`--strict-reconfig-check`, on by default), which
/// refuse a change that would leave fewer started voters than a quorum. A
/// member counts as started once it has published its name (bootstrap
/// members have theirs from `--initial-cluster`).
extension MemberTable {
    /// Adding a member with `peerURLs`, asked on member `local` (the leader),
    /// which has been in touch with the `healthy` members for etcd's health
    /// interval: every voter must be, else the new membership's quorum may
    /// count members that are down (etcd's isConnectedFullySince).
    public func checkAdd(peerURLs: [String], isLearner: Bool, local: UInt64, healthy: Set<UInt64>) throws(MemberError) {
        if !isLearner && !readyToAddVoter { throw .notEnoughStartedMembers }
        if !voters.allSatisfy({ $0.id == local || healthy.contains($0.id) }) { throw .unhealthy }
        if member(usingPeerURLs: peerURLs) != nil { throw .peerURLExists }
        // etcd 3.4 allows one learner at a time.
        if isLearner && members.values.contains(where: \.isLearner) { throw .tooManyLearners }
    }

    /// Removing member `id`, asked on member `local` (the leader), which is in
    /// touch with the `connected` members and has been with the `healthy`
    /// ones for etcd's health interval. A learner may always go; a voter not
    /// while the started voters left would be under quorum. A voter that is
    /// down may go; otherwise the healthy voters, less the one removed, must
    /// still make a quorum of the rest.
    public func checkRemove(_ id: UInt64, local: UInt64, connected: Set<UInt64>, healthy: Set<UInt64>) throws(MemberError) {
        let target = members[id]
        if target?.isLearner == true { return }
        let others = voters.filter { $0.id != id }
        if others.filter(\.isStarted).count < others.count / 2 + 1 { throw .notEnoughStartedMembers }
        guard let target else { throw .notFound }
        if target.id != local && !connected.contains(target.id) { return }
        let up = voters.filter { $0.id == local || healthy.contains($0.id) }.count
        if up - 1 < 1 + (voters.count - 1) / 2 { throw .unhealthy }
    }

    /// Promoting learner `id`: the started voters and the learner must make a
    /// quorum of the new membership (checked first, as etcd does before the
    /// change applies and its own checks run).
    public func checkPromote(_ id: UInt64) throws(MemberError) {
        let all = voters.count + 1
        if voters.filter(\.isStarted).count + 1 < all / 2 + 1 { throw .notEnoughStartedMembers }
        guard let member = members[id] else { throw .notFound }
        guard member.isLearner else { throw .notLearner }
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
