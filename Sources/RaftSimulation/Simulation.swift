import Raft

/// A whole cluster in one thread, driven by a seed: a simulated network that
/// drops, delays, reorders and duplicates; partitions; crashes that lose whatever
/// was not yet on the simulated disk; membership changes, leader transfers,
/// snapshots and ReadIndex reads in the middle of client load. The ``Oracle``
/// checks safety after every Ready; the run ends with a liveness check once
/// every fault has healed.
public final class Simulation {
    let options: SimulationOptions
    let profile: FaultProfile
    var random: SplitMix64
    /// Members by id; index `id - 1`. Spares join through membership changes.
    var members: [SimNode] = []
    var network = Network()
    public internal(set) var oracle = Oracle()
    var now = 0
    var healed = false
    var downUntil: [NodeID: Int] = [:]
    var partitionUntil = 0
    var maxNodeID: NodeID
    var nextProposal: UInt64 = 1
    /// Per member: index → (term, proposal id) awaiting application there.
    var pendingProposals: [NodeID: [UInt64: (term: UInt64, id: UInt64)]] = [:]
    /// Highest index of an acknowledged proposal so far.
    var maxAckedIndex: UInt64 = 0
    var ackedAfterHeal = false
    /// Per member: read context → highest acknowledged index when the read began.
    var pendingReads: [NodeID: [UInt64: UInt64]] = [:]
    /// Proposals a follower forwarded to its leader, by batch context, until the leader answers.
    var pendingForwards: [NodeID: [UInt64: [UInt64]]] = [:]
    /// Forwarded proposals refused as certainly not taken: none may ever apply.
    var refusedProposals: Set<UInt64> = []
    var nextRead: UInt64 = 1
    var finalReads: Set<UInt64> = []
    var snapshotFailures: [(from: NodeID, to: NodeID)] = []
    var stats = (acked: 0, reads: 0, snapshots: 0, confChanges: 0, crashes: 0)
    var leaderTerms: Set<UInt64> = []
    let tickEvery = 10

    public init(options: SimulationOptions) throws {
        self.options = options
        var random = SplitMix64(seed: options.seed)
        self.profile = FaultProfile(random: &random)
        self.random = random
        self.maxNodeID = NodeID(options.nodes + 3)
        let voters = (1...options.nodes).map { NodeID($0) }
        for id in voters {
            members.append(try SimNode(id: id, config: makeConfig(id), bootstrap: voters))
        }
    }

    func makeConfig(_ id: NodeID) -> RaftConfig {
        var config = RaftConfig(id: id)
        config.electionTick = 10
        config.heartbeatTick = 1
        config.seed = options.seed
        config.maxSizePerMessage = 256
        config.maxInflightMessages = 4 + Int(options.seed % 3) * 60
        config.brokenRules = options.brokenRules
        // A third of the seeds serve reads from the leader lease.
        if options.seed % 3 == 2 { config.readOnly = .leaseBased }
        return config
    }

    func member(_ id: NodeID) -> SimNode? {
        let index = Int(id) - 1
        return index >= 0 && index < members.count ? members[index] : nil
    }

    func trace(_ text: @autoclosure () -> String) {
        if options.trace { print("[\(now)ms] \(text())") }
    }

    func chance(_ probability: Double) -> Bool {
        probability > 0 && Double(random.next() % 1_000_000) < probability * 1_000_000
    }

    func randomInt(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(random.next() % UInt64(range.count))
    }

    var liveLeaders: [SimNode] { members.filter { $0.raft?.role == .leader } }

    // MARK: The run

    public func run() -> SimulationResult {
        trace("seed \(options.seed), \(options.nodes) nodes, \(profile)")
        let end = options.faultMilliseconds + options.livenessMilliseconds
        let quietFrom = end - 1_000
        while now < end && oracle.violations.isEmpty {
            if !healed && now >= options.faultMilliseconds { heal() }
            deliverDueMessages()
            for node in members where node.isUp && (now + Int(node.id)) % tickEvery == 0 {
                node.raft?.tick()
                process(node)
            }
            restartDueMembers()
            if now < quietFrom { clientLoad() }
            if now == quietFrom { issueFinalReads() }
            if !healed { injectFaults() }
            now += 1
        }
        if oracle.violations.isEmpty { checkLiveness() }
        return SimulationResult(
            seed: options.seed, nodes: options.nodes, violations: oracle.violations,
            committed: oracle.maxCommitted, acknowledged: stats.acked, reads: stats.reads,
            elections: leaderTerms.count, snapshotsInstalled: stats.snapshots,
            confChanges: stats.confChanges, crashes: stats.crashes,
            commitsLost: members.reduce(0) { $0 + $1.commitsLostInCrashes }, profile: profile.description)
    }

    func process(_ node: SimNode) {
        node.processReady(self)
    }

    private func deliverDueMessages() {
        for failure in snapshotFailures {
            member(failure.from)?.raft?.reportSnapshot(to: failure.to, succeeded: false)
        }
        snapshotFailures.removeAll()
        while let message = network.popDue(at: now) {
            guard let target = member(message.to), target.isUp else {
                if message.kind == .snapshot { snapshotFailures.append((message.from, message.to)) }
                continue
            }
            trace("n\(message.from)→n\(message.to) \(describe(message))")
            target.raft?.step(message)
            process(target)
            if message.kind == .snapshot, let sender = member(message.from) {
                sender.raft?.reportSnapshot(to: message.to, succeeded: true)
                process(sender)
            }
        }
    }

    private func restartDueMembers() {
        for node in members where !node.isUp {
            guard let due = downUntil[node.id], due <= now else { continue }
            restart(node)
        }
    }

    func restart(_ node: SimNode) {
        downUntil[node.id] = nil
        do {
            try node.start(seedSalt: UInt64(now))
        } catch {
            oracle.fail("n\(node.id) failed to restart: \(error)")
            return
        }
        trace("n\(node.id) restarts (commit \(node.raft?.commitIndex ?? 0))")
        oracle.observeRestart(node)
        process(node)
    }

    func crash(_ node: SimNode, for duration: Int) {
        let powerLoss = chance(0.5)
        node.crash(powerLoss: powerLoss)
        pendingProposals[node.id] = nil
        pendingReads[node.id] = nil
        pendingForwards[node.id] = nil
        downUntil[node.id] = now + duration
        stats.crashes += 1
        trace("n\(node.id) \(powerLoss ? "loses power" : "crashes") for \(duration)ms")
    }

    private func heal() {
        healed = true
        network.blocked.removeAll()
        trace("heal: all links restored, all members restarted")
        for node in members where !node.isUp { restart(node) }
    }

    // MARK: Client load

    private func clientLoad() {
        if chance(profile.proposeRate) {
            // A third of client writes reach a follower, which forwards them.
            let followers = members.filter { $0.isUp && $0.raft?.role == .follower && $0.raft?.leader != NodeID.none }
            if chance(0.33), let follower = pick(followers) {
                forward(on: follower, count: chance(profile.batchRate) ? randomInt(2...6) : 1)
            } else if let leader = pick(liveLeaders) {
                propose(on: leader, count: chance(profile.batchRate) ? randomInt(2...6) : 1)
            }
        }
        if chance(profile.readRate), let node = pick(members.filter(\.isUp)) {
            let context = nextRead
            nextRead += 1
            let bytes = withUnsafeBytes(of: context.littleEndian) { Array($0) }
            let issuedAt = maxAckedIndex
            if (try? node.raft?.readIndex(context: bytes)) != nil {
                pendingReads[node.id, default: [:]][context] = issuedAt
                process(node)
            }
        }
    }

    private func propose(on leader: SimNode, count: Int) {
        let ids = (0..<count).map { nextProposal + UInt64($0) }
        nextProposal += UInt64(count)
        let result = leader.with { raft -> (UInt64, UInt64)? in
            if count == 1 {
                guard let r = try? raft.propose(Proposal.encode(ids[0])) else { return nil }
                return (r.index, r.term)
            }
            guard let r = try? raft.propose(batch: ids.map(Proposal.encode)) else { return nil }
            return (r.firstIndex, r.term)
        }
        guard let (first, term) = result ?? nil else { return }
        for (offset, id) in ids.enumerated() {
            pendingProposals[leader.id, default: [:]][first + UInt64(offset)] = (term, id)
        }
        process(leader)
    }

    private func forward(on follower: SimNode, count: Int) {
        let ids = (0..<count).map { nextProposal + UInt64($0) }
        nextProposal += UInt64(count)
        let context = nextRead
        nextRead += 1
        let forwarded = follower.with { raft -> Bool in
            (try? raft.forward(ids.map(Proposal.encode), context: Proposal.encode(context))) != nil
        }
        guard forwarded == true else { return }
        pendingForwards[follower.id, default: [:]][context] = ids
        process(follower)
    }

    func pick<T>(_ values: [T]) -> T? {
        values.isEmpty ? nil : values[Int(random.next() % UInt64(values.count))]
    }

    // MARK: Faults

    private func injectFaults() {
        if partitionUntil <= now && !network.blocked.isEmpty {
            network.blocked.removeAll()
            trace("partition healed")
        }
        if partitionUntil <= now && chance(profile.partitionRate) { partition() }
        if chance(profile.crashRate) {
            let leader = chance(0.3) ? liveLeaders.first : nil
            if let victim = leader ?? pick(members.filter(\.isUp)) {
                crash(victim, for: randomInt(20...800))
            }
        }
        if chance(profile.confChangeRate) { changeMembership() }
        if chance(profile.transferRate), let leader = pick(liveLeaders),
            let target = pick(leader.raft?.confState.voters.filter { $0 != leader.id } ?? [])
        {
            trace("transfer leadership n\(leader.id) → n\(target)")
            try? leader.raft?.transferLeadership(to: target)
            process(leader)
        }
    }

    private func partition() {
        let ids = members.map(\.id)
        partitionUntil = now + randomInt(50...1_000)
        switch random.next() % 4 {
        case 0:
            // Isolate the leader (or anyone) in both directions.
            guard let victim = liveLeaders.first?.id ?? pick(ids) else { return }
            for other in ids where other != victim {
                network.blocked.insert(.init(from: victim, to: other))
                network.blocked.insert(.init(from: other, to: victim))
            }
            trace("partition: n\(victim) isolated")
        case 1:
            // Split into a minority and a majority.
            var shuffled = ids
            for i in shuffled.indices.reversed() where i > 0 { shuffled.swapAt(i, randomInt(0...i)) }
            let minority = Set(shuffled.prefix(randomInt(1...max(1, ids.count / 2))))
            for a in ids { for b in ids where minority.contains(a) != minority.contains(b) {
                network.blocked.insert(.init(from: a, to: b))
            } }
            trace("partition: \(minority.sorted()) | rest")
        case 2:
            // One-way: a member hears nobody but is heard (or the reverse).
            guard let victim = pick(ids) else { return }
            let deaf = chance(0.5)
            for other in ids where other != victim {
                network.blocked.insert(deaf ? .init(from: other, to: victim) : .init(from: victim, to: other))
            }
            trace("partition: n\(victim) \(deaf ? "hears nobody" : "is heard by nobody")")
        default:
            // Random links cut.
            for a in ids { for b in ids where a != b && chance(0.3) {
                network.blocked.insert(.init(from: a, to: b))
            } }
            trace("partition: random links cut")
        }
    }

    private func changeMembership() {
        guard let leader = pick(liveLeaders), let conf = leader.raft?.confState else { return }
        let change: ConfChange
        switch random.next() % 4 {
        case 0:
            let next = NodeID(members.count + 1)
            guard next <= maxNodeID else { return }
            change = ConfChange(.addLearner, node: next)
        case 1:
            guard let learner = pick(conf.learners) else { return }
            change = ConfChange(random.next() % 2 == 0 ? .promote : .addVoter, node: learner)
        case 2:
            guard conf.voters.count > 1, let voter = pick(conf.voters) else { return }
            change = ConfChange(.remove, node: voter)
        default:
            guard let learner = pick(conf.learners) else { return }
            change = ConfChange(.remove, node: learner)
        }
        guard (try? leader.raft?.proposeConfChange(change)) != nil else { return }
        stats.confChanges += 1
        trace("conf change proposed on n\(leader.id): \(change.kind) n\(change.node)")
        if change.kind == .addLearner {
            do {
                members.append(try SimNode(id: change.node, config: makeConfig(change.node), bootstrap: nil))
            } catch {
                oracle.fail("could not create n\(change.node): \(error)")
            }
        }
        process(leader)
    }

    // MARK: Liveness

    /// One read on every running member once the load stops; each must be
    /// answered before the run ends.
    private func issueFinalReads() {
        finalReads.removeAll()
        // Only current members: a removed member may still forward to a leader
        // that is long gone (a server would time the read out).
        let leader = liveLeaders.max { ($0.raft?.term ?? 0) < ($1.raft?.term ?? 0) }
        let conf = leader?.raft?.confState ?? ConfState()
        for node in members where node.isUp && conf.contains(node.id) {
            let context = nextRead
            nextRead += 1
            let bytes = withUnsafeBytes(of: context.littleEndian) { Array($0) }
            if (try? node.raft?.readIndex(context: bytes)) != nil {
                pendingReads[node.id, default: [:]][context] = maxAckedIndex
                finalReads.insert(context)
                process(node)
            }
        }
    }

    private func checkLiveness() {
        let leaders = liveLeaders.sorted { ($0.raft?.term ?? 0) > ($1.raft?.term ?? 0) }
        guard let leader = leaders.first, let raft = leader.raft else {
            oracle.fail("liveness: no leader \(options.livenessMilliseconds)ms after healing")
            return
        }
        if !ackedAfterHeal {
            oracle.fail("liveness: nothing committed and acknowledged after healing (leader n\(leader.id), term \(raft.term))")
            return
        }
        let unanswered = finalReads.filter { context in pendingReads.values.contains { $0[context] != nil } }
        if !unanswered.isEmpty {
            oracle.fail("liveness: \(unanswered.count) read(s) issued after healing were never answered")
        }
        let commit = raft.commitIndex
        if commit < maxAckedIndex {
            oracle.fail("durability: leader commit \(commit) below acknowledged index \(maxAckedIndex)")
        }
        for id in raft.confState.voters + raft.confState.learners {
            guard let node = member(id), let other = node.raft else {
                oracle.fail("liveness: member n\(id) is not running after healing")
                continue
            }
            if node.stateMachine.appliedIndex != commit || other.commitIndex != commit {
                oracle.fail("convergence: n\(id) applied \(node.stateMachine.appliedIndex), commit \(other.commitIndex); leader n\(leader.id) commit \(commit)")
            } else if let expected = oracle.hash(at: commit), expected != node.stateMachine.hash {
                oracle.fail("convergence: n\(id) state differs at \(commit)")
            }
        }
    }

    func describe(_ m: Message) -> String {
        var text = "\(m.kind) t\(m.term)"
        switch m.kind {
        case .append: text += " prev=\(m.index)/\(m.logTerm) n=\(m.entries.count) commit=\(m.commit)"
        case .appendResponse: text += m.reject ? " reject \(m.index) hint=\(m.rejectHint)/\(m.logTerm)" : " ok \(m.index)"
        case .vote, .preVote: text += " last=\(m.index)/\(m.logTerm)"
        case .voteResponse, .preVoteResponse: text += m.reject ? " rejected" : " granted"
        case .heartbeat: text += " commit=\(m.commit)"
        case .snapshot: text += " at \(m.snapshot?.metadata.index ?? 0)"
        case .readIndexResponse: text += " index=\(m.index)"
        case .propose: text += " n=\(m.entries.count)"
        case .proposeResponse: text += m.reject ? " refused" : " from \(m.index)"
        default: break
        }
        return text
    }
}
