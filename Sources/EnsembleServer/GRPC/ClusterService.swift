import Crypto
import EnsembleAPI
import Foundation
import KV
import Raft
import SwiftProtobuf

/// etcd's Cluster service over the replicated member directory
/// (``KV/MemberTable``): MemberList, and MemberAdd, MemberRemove, MemberUpdate
/// and MemberPromote. Adding, removing and promoting are Raft configuration
/// changes carrying the member's record; updating peer URLs is an ordinary
/// command. Checks run on the applied state before proposing, with etcd's
/// errors; the leader applies the change, one at a time.
public struct ClusterService: Sendable {
    let node: NodeLoop<KVReplica>
    let routing: LeaderRouting

    public init(
        node: NodeLoop<KVReplica>,
        leaderInProcess: @escaping @Sendable (NodeID) -> NodeLoop<KVReplica>? = { _ in nil }
    ) {
        self.node = node
        self.routing = LeaderRouting(node: node, leaderInProcess: leaderInProcess)
    }

    public func register(on router: inout GRPCRouter) {
        let service = self
        router.unary["/etcdserverpb.Cluster/MemberList"] = .task { _ in await service.memberList() }
        router.unary["/etcdserverpb.Cluster/MemberAdd"] = .task { await service.memberAdd($0) }
        router.unary["/etcdserverpb.Cluster/MemberRemove"] = .task { await service.memberRemove($0) }
        router.unary["/etcdserverpb.Cluster/MemberUpdate"] = .task { await service.memberUpdate($0) }
        router.unary["/etcdserverpb.Cluster/MemberPromote"] = .task { await service.memberPromote($0) }
        // A change a leader in another process made: answered from here too.
        router.afterForward["/etcdserverpb.Cluster/MemberAdd"] = { await service.settled($0, as: Etcdserverpb_MemberAddResponse.self) }
        router.afterForward["/etcdserverpb.Cluster/MemberRemove"] = {
            await service.settled($0, as: Etcdserverpb_MemberRemoveResponse.self)
        }
        router.afterForward["/etcdserverpb.Cluster/MemberUpdate"] = {
            await service.settled($0, as: Etcdserverpb_MemberUpdateResponse.self)
        }
        router.afterForward["/etcdserverpb.Cluster/MemberPromote"] = {
            await service.settled($0, as: Etcdserverpb_MemberPromoteResponse.self)
        }
    }

    /// The directory once this member has applied everything committed when
    /// asked (a ReadIndex round): a change the leader answered for is then
    /// applied here too, as etcd's `configure` waits for its own member to
    /// apply it — a `member list` right after `member add` on the same
    /// endpoint shows the new member, and a joiner that asks this member
    /// finds itself (review finding). nil if that cannot be known now.
    ///
    /// Bounded by ``settleLimit``: a round that cannot complete soon (a
    /// leader that lost its quorum to the very change) leaves the answer as
    /// the leader gave it.
    func settledDirectory() async -> MemberTable? {
        let node = self.node
        let confirmed: Bool? = await withinLimit(Self.settleLimit) { answer in
            node.withMachineConfirmed({ _ in () }) { answer((try? $0.get()) != nil) }
        }
        guard confirmed == true else { return nil }
        return try? await directory()
    }

    static let settleLimit: Duration = .seconds(2)

    /// A leader's answer to a forwarded change, with this member's header
    /// and its directory once it has applied the change (unchanged if it
    /// cannot tell).
    func settled<Response: MemberChangeResponse>(_ bytes: [UInt8], as: Response.Type) async -> [UInt8] {
        // This member removed: its leader no longer answers its ReadIndex.
        guard var response = try? Response(serializedBytes: bytes), response.members.contains(where: { $0.id == node.status.id }),
            let table = await settledDirectory()
        else { return bytes }
        response.header = header(table)
        response.members = table.sorted.map(Etcdserverpb_Member.init)
        return (try? response.serializedBytes()) ?? bytes
    }

    func header(_ directory: MemberTable) -> Etcdserverpb_ResponseHeader {
        let status = node.status
        var header = Etcdserverpb_ResponseHeader()
        header.clusterID = directory.clusterID
        header.memberID = status.id
        header.raftTerm = status.term
        return header
    }

    func directory() async throws(NodeError) -> MemberTable {
        guard let table = await node.withMachine({ $0.machine.members }) else { throw NodeError.stopped }
        return table
    }

    func memberList() async -> Result<[UInt8], GRPCStatus> {
        let table: MemberTable
        do { table = try await directory() } catch { return .failure(KVService.status(error)) }
        var response = Etcdserverpb_MemberListResponse()
        response.header = header(table)
        response.members = table.sorted.map(Etcdserverpb_Member.init)
        return KVService.serialize(response)
    }

    func memberAdd(_ bytes: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        guard let request = try? Etcdserverpb_MemberAddRequest(serializedBytes: bytes) else {
            return .failure(.invalidArgument("malformed MemberAddRequest"))
        }
        guard let urls = Self.peerURLs(request.peerUrls) else { return .failure(Self.status(.badURLs)) }
        let learner = request.isLearner
        let outcome = await apply { replica, leader in
            let table = replica.machine.members
            do throws(MemberError) {
                try table.checkAdd(peerURLs: urls, isLearner: learner, local: leader.id, healthy: leader.healthyPeers)
            } catch { return .refuse(.failure(.member(error))) }
            // A new id every time (etcd mixes in the time too), so a member
            // that was removed never comes back under its old id.
            var id: UInt64 = 0
            repeat {
                id = Self.memberID(
                    peerURLs: urls, salt: "\(table.clusterID)/\(Date().timeIntervalSince1970)/\(UInt64.random(in: 0...UInt64.max))")
            } while id == 0 || table.members[id] != nil || table.removed.contains(id)
            let record = Member(id: id, peerURLs: urls, isLearner: learner)
            return .propose(ConfChange(learner ? .addLearner : .addVoter, node: id, context: KVReplica.memberContext(record)))
        }
        switch outcome {
        case let .success((members, header)):
            // Peer URLs are unique in the directory: they name the new member.
            guard let record = members.first(where: { $0.peerURLs == urls }) else { return .failure(.internal("added member not found")) }
            var response = Etcdserverpb_MemberAddResponse()
            response.header = header
            response.member = Etcdserverpb_Member(record)
            response.members = members.map(Etcdserverpb_Member.init)
            return KVService.serialize(response)
        case let .failure(status):
            return .failure(status)
        }
    }

    func memberRemove(_ bytes: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        guard let request = try? Etcdserverpb_MemberRemoveRequest(serializedBytes: bytes) else {
            return .failure(.invalidArgument("malformed MemberRemoveRequest"))
        }
        let id = request.id
        let outcome = await apply { replica, leader in
            do throws(MemberError) {
                try replica.machine.members.checkRemove(
                    id, local: leader.id, connected: leader.connectedPeers, healthy: leader.healthyPeers)
            } catch {
                return .refuse(.failure(.member(error)))
            }
            return .propose(ConfChange(.remove, node: id))
        }
        switch outcome {
        case let .success((members, header)):
            var response = Etcdserverpb_MemberRemoveResponse()
            response.header = header
            response.members = members.map(Etcdserverpb_Member.init)
            return KVService.serialize(response)
        case let .failure(status):
            return .failure(status)
        }
    }

    func memberUpdate(_ bytes: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        guard var request = try? Etcdserverpb_MemberUpdateRequest(serializedBytes: bytes) else {
            return .failure(.invalidArgument("malformed MemberUpdateRequest"))
        }
        guard let urls = Self.peerURLs(request.peerUrls) else { return .failure(Self.status(.badURLs)) }
        request.peerUrls = urls
        var command = Ensemble_V1_Command()
        command.memberPeerUrls.id = request.id
        command.memberPeerUrls.peerUrls = request.peerUrls
        switch await routing.submit(command) {
        case let .success(.members(members)):
            var response = Etcdserverpb_MemberUpdateResponse()
            let table = (try? await directory()) ?? MemberTable()
            response.header = header(table)
            response.members = members.map(Etcdserverpb_Member.init)
            return KVService.serialize(response)
        case .success:
            return .failure(.internal("unexpected response"))
        case let .failure(status):
            return .failure(status)
        }
    }

    /// A learner becomes a voter once it has caught up: its log must reach 90%
    /// of the leader's (etcd's readiness rule).
    func memberPromote(_ bytes: [UInt8]) async -> Result<[UInt8], GRPCStatus> {
        guard let request = try? Etcdserverpb_MemberPromoteRequest(serializedBytes: bytes) else {
            return .failure(.invalidArgument("malformed MemberPromoteRequest"))
        }
        let id = request.id
        let outcome = await apply { replica, leader in
            let table = replica.machine.members
            do throws(MemberError) {
                // etcd's order: readiness (for a member the leader tracks),
                // the strict check, then the directory's rules.
                if let learnerMatch = leader.matchIndexes[id] {
                    let leaderMatch = leader.matchIndexes[leader.id] ?? leader.commitIndex
                    if Double(learnerMatch) < Double(leaderMatch) * 0.9 { throw MemberError.learnerNotReady }
                }
                try table.checkPromote(id)
            } catch {
                return .refuse(.failure(.member(error)))
            }
            return .propose(ConfChange(.promote, node: id))
        }
        switch outcome {
        case let .success((members, header)):
            var response = Etcdserverpb_MemberPromoteResponse()
            response.header = header
            response.members = members.map(Etcdserverpb_Member.init)
            return KVService.serialize(response)
        case let .failure(status):
            return .failure(status)
        }
    }

    /// Refusals that say only "not now" — no leader yet, a leader that has
    /// not committed an entry of its term, a leadership transfer under way,
    /// another membership change not yet applied — are asked again for up
    /// to ``leaderWait``, as etcd's proposal waits (for a leader; behind a
    /// pending change etcd's times out): nothing was proposed, so nothing
    /// can happen twice.
    private func proposeWhenLeaderReady(_ check: @escaping NodeLoop<KVReplica>.ConfChangeCheck) async throws(NodeError) -> KVReplica.Result {
        let deadline = ContinuousClock.now + Self.leaderWait
        while true {
            do {
                return try await routing.proposeConfChange(checked: check)
            } catch let error where ContinuousClock.now < deadline && Self.isNotNow(error) {
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    static let leaderWait: Duration = .seconds(5)

    static func isNotNow(_ error: NodeError) -> Bool {
        switch error {
        case .noLeader, .notLeader(leader: .none): true
        case let .proposalDropped(why):
            why.contains("leaderNotReady") || why.contains("leadershipTransferInProgress") || why.contains("confChangeInProgress")
        default: false
        }
    }

    /// Proposes the membership change `check` decides on the leader
    /// (``LeaderRouting/proposeConfChange(checked:)``); the directory after
    /// it applied here, and the response header.
    private func apply(
        _ check: @escaping NodeLoop<KVReplica>.ConfChangeCheck
    ) async -> Result<([Member], Etcdserverpb_ResponseHeader), GRPCStatus> {
        let result: KVReplica.Result
        do {
            result = try await proposeWhenLeaderReady(check)
        } catch let NodeError.proposalDropped(why) where why.contains("confChangeInProgress") {
            // Another change still applying after ``leaderWait``: etcd's Raft
            // drops such a proposal and its caller waits out the request
            // timeout, so clients know this as etcd's ErrTimeout.
            return .failure(KVService.status(NodeError.outcomeUnknown))
        } catch let NodeError.proposalDropped(why) where why.contains("notLearner") {
            // Raft's own check: the configuration changed since the directory was read.
            return .failure(Self.status(.notLearner))
        } catch let NodeError.proposalDropped(why) where why.contains("notMember") {
            return .failure(Self.status(.notFound))
        } catch {
            return .failure(KVService.status(error))
        }
        switch result {
        case let .success(.members(members)):
            // Applied on the leader: when that was another member in this
            // process, answered once applied here too (unless this member
            // was the one removed: its leader no longer answers it).
            let status = node.status
            if status.leader != status.id, members.contains(where: { $0.id == status.id }),
                let table = await settledDirectory()
            {
                return .success((table.sorted, header(table)))
            }
            let table = (try? await directory()) ?? MemberTable()
            return .success((members, header(table)))
        case .success: return .failure(.internal("unexpected response"))
        case let .failure(.member(error)): return .failure(Self.status(error))
        case let .failure(error): return .failure(.internal(error.description))
        }
    }

    static func status(_ error: MemberError) -> GRPCStatus {
        GRPCStatus(code: error.grpcCode, message: error.description)
    }

    /// Peer URLs as etcd's `types.NewURLs` takes them: each trimmed of
    /// spaces (etcdctl splits `--peer-urls` on commas only), a
    /// `scheme://host:port` with no path, sorted; nil if any is not.
    static func peerURLs(_ given: [String]) -> [String]? {
        let trimmed = given.map { $0.trimmingCharacters(in: .whitespaces) }
        guard !trimmed.isEmpty, trimmed.allSatisfy(isValidURL) else { return nil }
        return trimmed.sorted()
    }

    /// etcd accepts `scheme://host:port` URLs with http or https (and unix
    /// sockets), and no path.
    static func isValidURL(_ string: String) -> Bool {
        guard let url = URL(string: string), let scheme = url.scheme, ["http", "https", "unix", "unixs"].contains(scheme),
            let host = url.host, !host.isEmpty, url.port != nil, url.path.isEmpty
        else { return false }
        return true
    }

    /// A member id from its peer URLs, as etcd computes it: the first 8
    /// bytes, big-endian, of the SHA-1 of the sorted URLs joined and the
    /// salt (for founders the cluster token, so a founder gets the id etcd
    /// would give it for the same flags). SHA-1 names here, as in etcd; it
    /// guards nothing.
    public static func memberID(peerURLs: [String], salt: String) -> UInt64 {
        let digest = Array(Insecure.SHA1.hash(data: Array((peerURLs.sorted().joined() + salt).utf8)))
        return digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The cluster id from the founding members' ids, as etcd's: SHA-1 of
    /// the sorted ids, 8 bytes big-endian each.
    public static func clusterID(memberIDs: [UInt64]) -> UInt64 {
        var bytes: [UInt8] = []
        for id in memberIDs.sorted() { withUnsafeBytes(of: id.bigEndian) { bytes.append(contentsOf: $0) } }
        return Array(Insecure.SHA1.hash(data: bytes)).prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}

extension Etcdserverpb_Member {
    init(_ member: Member) {
        self.init()
        id = member.id
        name = member.name
        peerUrls = member.peerURLs
        clientUrls = member.clientURLs
        isLearner = member.isLearner
    }
}

/// The answers to membership changes: a header and the members after it.
protocol MemberChangeResponse: SwiftProtobuf.Message {
    var header: Etcdserverpb_ResponseHeader { get set }
    var members: [Etcdserverpb_Member] { get set }
}

extension Etcdserverpb_MemberAddResponse: MemberChangeResponse {}
extension Etcdserverpb_MemberRemoveResponse: MemberChangeResponse {}
extension Etcdserverpb_MemberUpdateResponse: MemberChangeResponse {}
extension Etcdserverpb_MemberPromoteResponse: MemberChangeResponse {}
