/// The AppendEntries messages sent to one follower and not yet acknowledged:
/// the pipelining window (thesis §10.2.2). Bounded by count and by bytes.
///
/// Each slot holds the last index a message carried and its size. A ring buffer,
/// so sliding the window allocates nothing after warm-up.
struct Inflights: Sendable {
    private var indexes: [UInt64] = []
    private var sizes: [Int] = []
    private var start = 0
    private(set) var count = 0
    private(set) var bytes = 0
    let capacity: Int
    let maxBytes: Int

    init(capacity: Int, maxBytes: Int) {
        precondition(capacity > 0, "in-flight window must hold at least one message")
        self.capacity = capacity
        self.maxBytes = maxBytes
    }

    /// No more messages may be sent until some are acknowledged.
    var isFull: Bool { count >= capacity || (maxBytes > 0 && bytes >= maxBytes) }

    /// Records a message whose last entry is `index`. Indexes must increase.
    mutating func add(index: UInt64, bytes size: Int) {
        precondition(!isFull, "adding to a full in-flight window")
        if indexes.count < capacity {
            indexes.reserveCapacity(capacity)
            sizes.reserveCapacity(capacity)
        }
        let slot = (start + count) % capacity
        if slot == indexes.count {
            indexes.append(index)
            sizes.append(size)
        } else {
            indexes[slot] = index
            sizes[slot] = size
        }
        count += 1
        bytes += size
    }

    /// Frees every message whose last index is `<= index`.
    mutating func free(upTo index: UInt64) {
        while count > 0 && indexes[start] <= index {
            bytes -= sizes[start]
            start = (start + 1) % capacity
            count -= 1
        }
        if count == 0 { start = 0 }
    }

    /// Frees the oldest message (a heartbeat response shows the follower is alive).
    mutating func freeFirst() {
        guard count > 0 else { return }
        free(upTo: indexes[start])
    }

    mutating func reset() {
        start = 0
        count = 0
        bytes = 0
    }
}
