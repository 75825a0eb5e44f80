// Leader side of log replication (§5.3): pipelined, batched AppendEntries with
// fast backtracking, snapshots for followers behind the compaction point, and
// commitment by counting current-term replicas (§5.4.2).

extension RaftNode {
    /// Appends entries at the end of the leader's log, assigning index and term.
    mutating func appendEntries(_ entries: [Entry]) {
        var entries = entries
        var index = log.lastIndex
        for i in entries.indices {
            index += 1
            entries[i].term = term
            entries[i].index = index
        }
        log.append(entries)
        // Sent once per Ready to every follower: many proposals, one message per peer.
        needsBroadcast = true
    }

    /// Sends followers whatever they are missing, as the windows allow, plus an
    /// empty AppendEntries where only the commit index is news.
    mutating func broadcastAppend() {
        for peer in peers {
            if !sendAppend(to: peer, sendIfEmpty: true) { continue }
            while sendAppend(to: peer, sendIfEmpty: false) {}
        }
    }

    /// Sends one AppendEntries (or a snapshot) to `peer`. Returns whether a
    /// message was sent.
    @discardableResult
    mutating func sendAppend(to peer: NodeID, sendIfEmpty: Bool) -> Bool {
        guard let pr = progress[peer], !pr.isPaused else { return false }
        let prevIndex = pr.next - 1
        guard let prevTerm = log.term(at: prevIndex) else {
            return sendSnapshot(to: peer)
        }
        let entries: [Entry]
        do {
            entries = try log.entries(from: pr.next, maxBytes: config.maxSizePerMessage)
        } catch {
            return sendSnapshot(to: peer)
        }
        if entries.isEmpty && !sendIfEmpty { return false }
        let bytes = entries.byteSize
        send(Message(
            kind: .append, to: peer, logTerm: prevTerm, index: prevIndex,
            entries: entries, commit: log.committed))
        progress[peer]?.sentEntries(last: entries.last?.index ?? prevIndex, bytes: bytes, count: entries.count)
        return true
    }

    /// The follower needs entries we compacted: send the latest snapshot instead.
    private mutating func sendSnapshot(to peer: NodeID) -> Bool {
        // Only to a follower that is alive: a snapshot is large.
        guard progress[peer]?.recentActive == true else { return false }
        guard let snapshot = try? log.snapshot(), !snapshot.isEmpty else { return false }
        send(Message(kind: .snapshot, to: peer, snapshot: snapshot))
        progress[peer]?.becomeSnapshot(index: snapshot.metadata.index)
        return true
    }

    mutating func broadcastHeartbeat(context: [UInt8]) {
        for peer in peers {
            guard let pr = progress[peer] else { continue }
            // Never tell a follower to commit beyond what it is known to hold.
            send(Message(kind: .heartbeat, to: peer, commit: min(pr.match, log.committed), context: context))
        }
    }

    mutating func handleAppendResponse(_ message: Message) {
        let peer = message.from
        progress[peer]?.recentActive = true
        if message.reject {
            // Fast backtracking: skip the follower's whole conflicting term at once.
            var hint = message.rejectHint
            if message.logTerm > 0 {
                hint = log.findConflictByTerm(index: message.rejectHint, term: message.logTerm).index
            }
            guard progress[peer]?.maybeDecrease(rejected: message.index, hint: hint) == true else { return }
            if progress[peer]?.state == .replicate { progress[peer]?.becomeProbe() }
            sendAppend(to: peer, sendIfEmpty: true)
            return
        }
        guard let before = progress[peer] else { return }
        let updated = progress[peer]?.maybeUpdate(message.index) == true
        // An answer at exactly `match` still ends a probe (nothing new was sent).
        guard updated || (before.state == .probe && before.match == message.index) else { return }
        let wasPaused = before.isPaused
        guard let pr = progress[peer] else { return }
        switch pr.state {
        case .probe:
            progress[peer]?.becomeReplicate()
        case .snapshot where pr.match + 1 >= log.firstIndex:
            // The snapshot (or an append) caught the follower up.
            progress[peer]?.becomeProbe()
            progress[peer]?.becomeReplicate()
        case .snapshot where pr.match >= pr.pendingSnapshot:
            // Installed, but the log was compacted further meanwhile: probing
            // finds that and sends a newer snapshot.
            progress[peer]?.becomeProbe()
        case .replicate:
            progress[peer]?.inflights.free(upTo: message.index)
        case .snapshot:
            break
        }
        if maybeCommit() {
            needsBroadcast = true
        } else if wasPaused {
            sendAppend(to: peer, sendIfEmpty: true)
        }
        while sendAppend(to: peer, sendIfEmpty: false) {}
        if peer == leadTransferee, progress[peer]?.match == log.lastIndex {
            send(Message(kind: .timeoutNow, to: peer))
        }
    }

    mutating func handleHeartbeatResponse(_ message: Message) {
        let peer = message.from
        progress[peer]?.recentActive = true
        progress[peer]?.probeSent = false
        if let pr = progress[peer], pr.state == .replicate, pr.inflights.isFull {
            progress[peer]?.inflights.freeFirst()
        }
        if let pr = progress[peer], pr.match < log.lastIndex {
            sendAppend(to: peer, sendIfEmpty: true)
        }
        if !message.context.isEmpty { handleReadAck(from: peer, context: message.context) }
    }

    /// Advances the commit index to the highest index a majority of voters hold,
    /// if that entry is from the current term (§5.4.2, Figure 8).
    mutating func maybeCommit() -> Bool {
        var matches: [UInt64] = []
        matches.reserveCapacity(confState.voters.count)
        for voter in confState.voters { matches.append(progress[voter]?.match ?? 0) }
        let index = Quorum.committedIndex(matches: matches)
        if config.brokenRules.contains(.commitPreviousTermByCounting), index > log.committed {
            log.commitTo(index)
            return true
        }
        guard log.maybeCommit(index: index, term: term) else { return false }
        releaseReadsWaitingForCommit()
        return true
    }

    /// The driver persisted the leader's own entries: count them for itself.
    mutating func leaderPersisted(upTo index: UInt64) {
        guard role == .leader, progress[id]?.maybeUpdate(index) == true else { return }
        if maybeCommit() { needsBroadcast = true }
    }

    /// Tells the leader a message to `peer` could not be delivered: stop streaming
    /// to it optimistically and probe again.
    public mutating func reportUnreachable(_ peer: NodeID) {
        guard role == .leader, let pr = progress[peer], pr.state == .replicate else { return }
        progress[peer]?.becomeProbe()
    }

    /// Reports how sending a snapshot to `peer` ended. Either way the leader probes
    /// again after the next heartbeat; on success the follower's answer moves it on.
    public mutating func reportSnapshot(to peer: NodeID, succeeded: Bool) {
        guard role == .leader, let pr = progress[peer], pr.state == .snapshot else { return }
        if !succeeded { progress[peer]?.pendingSnapshot = 0 }
        progress[peer]?.becomeProbe()
        progress[peer]?.probeSent = true
    }
}
