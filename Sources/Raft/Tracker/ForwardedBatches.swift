/// The forwarded proposal batches a leader took recently, by sender and
/// context, so a duplicated `.propose` message is not appended twice (a
/// network may deliver a message twice; each client write must apply once).
/// Bounded: the oldest contexts are forgotten first. Reset with each term.
struct ForwardedBatches: Sendable {
    static let perPeer = 4096
    private var seen: [NodeID: (contexts: Set<[UInt8]>, order: [[UInt8]])] = [:]

    /// Records `context` from `peer`; false if it was already recorded.
    mutating func insert(_ context: [UInt8], from peer: NodeID) -> Bool {
        var entry = seen[peer] ?? ([], [])
        guard entry.contexts.insert(context).inserted else { return false }
        entry.order.append(context)
        if entry.order.count > Self.perPeer {
            entry.contexts.remove(entry.order.removeFirst())
        }
        seen[peer] = entry
        return true
    }

    mutating func removeAll() { seen.removeAll() }
}
