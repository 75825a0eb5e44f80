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

/// etcd's Cluster service: MemberList, answered from the member directory and
/// the node's published Raft status (learners). Member changes come next.
public struct ClusterService: Sendable {
    let node: NodeLoop<KVReplica>
    let clusterID: UInt64
    let members: [MemberInfo]

    public init(node: NodeLoop<KVReplica>, clusterID: UInt64, members: [MemberInfo]) {
        self.node = node
        self.clusterID = clusterID
        self.members = members
    }

    public func register(on router: inout GRPCRouter) {
        let service = self
        router.unary["/etcdserverpb.Cluster/MemberList"] = { _ in service.memberList() }
    }

    func memberList() -> Result<[UInt8], GRPCStatus> {
        let status = node.status
        var response = Etcdserverpb_MemberListResponse()
        response.header = HeaderSource(clusterID: clusterID, memberID: status.id, raftTerm: status.term).header(revision: 0)
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
}
