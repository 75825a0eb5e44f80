import EnsembleAPI
import Foundation
import Raft

/// What the cluster knows about a member, as etcd's `Member`.
public struct MemberInfo: Sendable {
    public var id: NodeID
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]

    public init(id: NodeID, name: String, peerURLs: [String], clientURLs: [String]) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
    }
}

/// etcd's Cluster.MemberList and Maintenance.Status, answered from the node's
/// published Raft status and the member directory. (Member changes, Snapshot,
/// Hash/HashKV, MoveLeader, Alarm and Defragment come next.)
public struct ClusterServices: Sendable {
    let node: NodeLoop<KVReplica>
    let clusterID: UInt64
    let members: [MemberInfo]
    /// Reported as the server version (semver with build metadata).
    public static let version = "3.4.0+ensemble"

    public init(node: NodeLoop<KVReplica>, clusterID: UInt64, members: [MemberInfo]) {
        self.node = node
        self.clusterID = clusterID
        self.members = members
    }

    public func register(on router: inout GRPCRouter) {
        let services = self
        router.unary["/etcdserverpb.Cluster/MemberList"] = { _ in services.memberList() }
        router.unary["/etcdserverpb.Maintenance/Status"] = { _ in services.status() }
    }

    private var header: Etcdserverpb_ResponseHeader {
        let status = node.status
        return HeaderSource(clusterID: clusterID, memberID: status.id, raftTerm: status.term).header(revision: 0)
    }

    func memberList() -> Result<[UInt8], GRPCStatus> {
        let status = node.status
        var response = Etcdserverpb_MemberListResponse()
        response.header = header
        response.members = members.map { info in
            var member = Etcdserverpb_Member()
            member.id = info.id
            member.name = info.name
            member.peerUrls = info.peerURLs
            member.clientUrls = info.clientURLs
            member.isLearner = status.learners.contains(info.id)
            return member
        }
        return KVService.serialize(response)
    }

    func status() -> Result<[UInt8], GRPCStatus> {
        let status = node.status
        var response = Etcdserverpb_StatusResponse()
        response.header = header
        response.version = Self.version
        response.leader = status.leader
        response.raftIndex = status.commitIndex
        response.raftTerm = status.term
        response.raftAppliedIndex = status.appliedIndex
        response.isLearner = status.learners.contains(status.id)
        return KVService.serialize(response)
    }
}
