// Follower side: AppendEntries, heartbeats and InstallSnapshot (Figure 2, §7).

extension RaftNode {
    mutating func handleAppend(_ message: Message) {
        if message.index < log.committed {
            // Everything up to our commit index matches the leader's log already.
            send(Message(kind: .appendResponse, to: message.from, index: log.committed))
            return
        }
        if let lastNew = log.maybeAppend(
            index: message.index, logTerm: message.logTerm, commit: message.commit, entries: message.entries)
        {
            send(Message(kind: .appendResponse, to: message.from, index: lastNew))
            return
        }
        // Mismatch: tell the leader the last index whose term is not above the
        // leader's prevLogTerm, so it can skip a whole conflicting term.
        let probe = min(message.index, log.lastIndex)
        let hint = log.findConflictByTerm(index: probe, term: message.logTerm)
        send(Message(
            kind: .appendResponse, to: message.from, logTerm: hint.term, index: message.index,
            reject: true, rejectHint: hint.index))
    }

    mutating func handleHeartbeat(_ message: Message) {
        // The leader never sends a commit index beyond what it knows we hold.
        if message.commit <= log.lastIndex { log.commitTo(message.commit) }
        send(Message(kind: .heartbeatResponse, to: message.from, context: message.context))
    }

    mutating func handleSnapshot(_ message: Message) {
        guard let snapshot = message.snapshot else { return }
        if restore(snapshot) {
            send(Message(kind: .appendResponse, to: message.from, index: log.lastIndex))
        } else {
            send(Message(kind: .appendResponse, to: message.from, index: log.committed))
        }
    }

    /// Installs `snapshot` unless we already have what it covers. Returns whether
    /// the log was replaced.
    private mutating func restore(_ snapshot: Snapshot) -> Bool {
        let meta = snapshot.metadata
        if meta.index <= log.committed { return false }
        // The snapshot's configuration may predate our own addition (a new member
        // catching up): install it anyway; the entries after it add us.
        if log.matchTerm(meta.index, meta.term) {
            // We hold the entry already: just learn that it is committed.
            log.commitTo(meta.index)
            return false
        }
        log.restore(snapshot)
        confState = meta.confState
        return true
    }
}
