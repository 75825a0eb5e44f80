/// Identifies a member of a Raft group. `0` is reserved and means "none"
/// (no vote cast, no known leader), as in etcd-io/raft.
public typealias NodeID = UInt64

extension NodeID {
    /// The reserved id meaning "no node".
    public static let none: NodeID = 0
}
