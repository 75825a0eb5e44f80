import Raft

/// The simulated network: every message waits in a queue ordered by delivery
/// time, so random delays reorder messages; links can drop, duplicate or be cut.
struct Network {
    struct InFlight {
        var deliverAt: Int
        var sequence: Int
        var message: Message
    }

    private var heap: [InFlight] = []
    private var sequence = 0
    /// Directed links that lose everything: (from, to).
    var blocked: Set<Link> = []

    struct Link: Hashable { var from: NodeID; var to: NodeID }

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }

    func isBlocked(from: NodeID, to: NodeID) -> Bool {
        !blocked.isEmpty && blocked.contains(Link(from: from, to: to))
    }

    mutating func enqueue(_ message: Message, at time: Int) {
        sequence += 1
        heap.append(InFlight(deliverAt: time, sequence: sequence, message: message))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if Self.less(heap[child], heap[parent]) {
                heap.swapAt(child, parent)
                child = parent
            } else {
                break
            }
        }
    }

    /// Removes and returns the earliest message due at or before `time`.
    mutating func popDue(at time: Int) -> Message? {
        guard let first = heap.first, first.deliverAt <= time else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count && Self.less(heap[left], heap[smallest]) { smallest = left }
                if right < heap.count && Self.less(heap[right], heap[smallest]) { smallest = right }
                if smallest == parent { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return first.message
    }

    private static func less(_ a: InFlight, _ b: InFlight) -> Bool {
        a.deliverAt != b.deliverAt ? a.deliverAt < b.deliverAt : a.sequence < b.sequence
    }
}
