/// The forwarded proposal batches a leader took recently, by sender and
/// context, so a duplicated `.propose` message is not appended twice (a
/// network may deliver a message twice; each client write must apply once).
/// Bounded: each peer's oldest contexts are forgotten first. Reset with each term.
struct ForwardedBatches: Sendable {
    static let perPeer = 4096

    /// One peer's recent contexts: a set for lookup, a ring for age.
    struct Window: Sendable {
        var contexts: Set<[UInt8]> = []
        var ring: [[UInt8]] = []
        var next = 0

        mutating func insert(_ context: [UInt8]) -> Bool {
            guard contexts.insert(context).inserted else { return false }
            if ring.count < ForwardedBatches.perPeer {
                ring.append(context)
            } else {
                contexts.remove(ring[next])
                ring[next] = context
                next = (next + 1) % ForwardedBatches.perPeer
            }
            return true
        }
    }

    private var seen: [NodeID: Window] = [:]

    /// Records `context` from `peer`; false if it was already recorded.
    mutating func insert(_ context: [UInt8], from peer: NodeID) -> Bool {
        // In place: copying a window per message would cost O(window).
        seen[peer, default: Window()].insert(context)
    }

    /// Whether a batch `context` from `peer` may have been taken this term:
    /// it is recorded, or the peer's window is full and may have forgotten it.
    func mayHaveTaken(_ context: [UInt8], from peer: NodeID) -> Bool {
        guard let window = seen[peer] else { return false }
        return window.contexts.contains(context) || window.ring.count >= Self.perPeer
    }

    mutating func removeAll() { seen.removeAll() }
}
