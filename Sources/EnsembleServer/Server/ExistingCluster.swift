import EnsembleAPI
import EnsembleClient
import Logging
import NIOCore
import NIOSSL
import SwiftProtobuf

/// The cluster a member started with `--initial-cluster-state existing` joins,
/// as the members named in `--initial-cluster` describe it. As etcd 3.4 does
/// (GetClusterFromRemotePeers, ValidateClusterAndAssignIDs), the joiner asks
/// them before it starts: `--initial-cluster` must list every member of that
/// cluster with its peer URLs (as `member add` prints it), and the joiner
/// takes its member id and the cluster id from the answer. A member not
/// added first, or a list that does not match, fails at once with etcd's
/// words instead of waiting for a leader that will never call.
struct ExistingCluster: Sendable, CustomStringConvertible {
    struct Member: Sendable {
        var id: UInt64
        var name: String
        var peerURLs: [String]
        var clientURLs: [String]
        var isLearner: Bool
    }

    var clusterID: UInt64
    var members: [Member]

    /// The member list, served on the peer port (the forwarder's routes;
    /// read from the member's own state, no leader needed, like etcd's `/members`).
    static let path = LeaderForwarder.prefix + "/etcdserverpb.Cluster/MemberList"

    /// Asks each of `peerURLs` in turn, ten seconds each (etcd's timeout);
    /// nil when none answers.
    static func fetch(
        from peerURLs: [String], tls: NIOSSLContext?, group: any EventLoopGroup, logger: Logger
    ) async -> ExistingCluster? {
        // (A member told to stop meanwhile asks no further URL.)
        for url in peerURLs where !Task.isCancelled {
            guard let address = HostPort(url: url) else { continue }
            var options = GRPCConnection.Options()
            options.waitForServerPreface = true
            options.connectTimeout = .seconds(10)
            if url.hasPrefix("https://") {
                guard let tls else {
                    logger.warning("failed to get cluster response", metadata: ["address": "\(url)", "error": "https:// needs peer TLS"])
                    continue
                }
                options.tls = tls
            }
            do {
                let connection = try await GRPCConnection.connect(host: address.host, port: address.port, group: group, options: options)
                let request = try Etcdserverpb_MemberListRequest().serializedBytes() as [UInt8]
                let answer: Result<[UInt8], any Error>
                do { answer = .success(try await connection.unary(path, request, timeout: .seconds(10))) } catch { answer = .failure(error) }
                await connection.close()
                let response = try Etcdserverpb_MemberListResponse(serializedBytes: try answer.get())
                return ExistingCluster(
                    clusterID: response.header.clusterID,
                    members: response.members.map {
                        Member(id: $0.id, name: $0.name, peerURLs: $0.peerUrls, clientURLs: $0.clientUrls, isLearner: $0.isLearner)
                    })
            } catch {
                logger.warning("failed to get cluster response", metadata: ["address": "\(url)", "error": "\(error)"])
            }
        }
        return nil
    }

    /// Each name of `local` (`--initial-cluster`) with the id of the member
    /// that has its peer URLs; throws etcd's errors when the two do not match.
    func assignIDs(local: [(name: String, peerURLs: [String])]) throws(ConfigurationError) -> [String: UInt64] {
        func failure(_ reason: String) -> ConfigurationError { ConfigurationError("error validating peerURLs \(self): \(reason)") }
        guard members.count == local.count else { throw failure("member count is unequal") }
        var ids: [String: UInt64] = [:]
        for member in members {
            guard let match = local.first(where: { $0.peerURLs.sorted() == member.peerURLs.sorted() }) else {
                throw failure("PeerURLs: no match found for existing member (\(hex(member.id)), \(goList(member.peerURLs))), last resolver error (<nil>)")
            }
            ids[match.name] = member.id
        }
        return ids
    }

    /// etcd's RaftCluster.String, as its start-up error prints it.
    var description: String {
        let shown = members.map { m in
            "&{ID:\(hex(m.id)) RaftAttributes:{PeerURLs:\(goList(m.peerURLs)) IsLearner:\(m.isLearner)} "
                + "Attributes:{Name:\(m.name) ClientURLs:\(goList(m.clientURLs))}}"
        }
        return "{ClusterID:\(hex(clusterID)) Members:[\(shown.joined(separator: " "))] RemovedMemberIDs:[]}"
    }

    private func goList(_ items: [String]) -> String { "[\(items.joined(separator: " "))]" }
}
