import Raft
import RaftSimulation

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

extension Cluster {
    /// Proposes on `id` and returns the index and term, failing the test if refused.
    func propose(_ id: NodeID, _ text: String) throws -> (index: UInt64, term: UInt64) {
        let result = on(id) { node -> Result<(index: UInt64, term: UInt64), ProposalError> in
            do {
                return .success(try node.propose(bytes(text)))
            } catch {
                return .failure(error as? ProposalError ?? .notLeader(leader: .none))
            }
        }
        guard let result else { throw ProposalError.notLeader(leader: .none) }
        return try result.get()
    }

    /// Ticks only the listed members until `id` is leader (at most `rounds` ticks).
    func tickUntilLeader(_ id: NodeID, ticking: [NodeID], rounds: Int = 100) {
        for _ in 0..<rounds {
            if members[id]?.raft?.role == .leader { return }
            for member in ticking { tick(member) }
            stabilize()
        }
    }

    /// Ticks `members` until one of them leads; returns it.
    func tickUntilAnyLeader(among members: [NodeID], rounds: Int = 200) -> NodeID? {
        for _ in 0..<rounds {
            if let leader = members.first(where: { self.members[$0]?.raft?.role == .leader }) { return leader }
            for member in members { tick(member) }
            stabilize()
        }
        return nil
    }

    func appliedData(_ id: NodeID) -> [[UInt8]] {
        (applied[id] ?? []).filter { $0.kind == .normal && !$0.data.isEmpty }.map(\.data)
    }
}
