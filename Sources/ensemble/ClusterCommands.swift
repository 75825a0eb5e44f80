import ArgumentParser
import EnsembleAPI
import EnsembleClient
import Foundation

/// `ensemble member list|add|remove`.
struct MemberCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "member", abstract: "List, add and remove members.", subcommands: [List.self, Add.self, Remove.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the members: id, name, peer and client URLs.")
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let etcd = try await client.connect()
            let response = try await etcd.call(
                "/etcdserverpb.Cluster/MemberList", Etcdserverpb_MemberListRequest(), as: Etcdserverpb_MemberListResponse.self,
                timeout: client.timeout)
            for m in response.members {
                let state = m.name.isEmpty ? "unstarted" : "started"
                print("\(String(m.id, radix: 16)), \(state), \(m.name), \(m.peerUrls.joined(separator: ",")), \(m.clientUrls.joined(separator: ","))\(m.isLearner ? ", learner" : "")")
            }
            await etcd.connection.close()
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a member; prints how to start it.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The new member's --name.") var name: String
        @Option(name: .customLong("peer-urls"), help: "The new member's peer URLs, comma-separated.") var peerURLs: String
        @Flag(help: "Add it as a learner (promote it once it has caught up).") var learner = false

        func run() async throws {
            let etcd = try await client.connect()
            var request = Etcdserverpb_MemberAddRequest()
            request.peerUrls = peerURLs.split(separator: ",").map(String.init)
            request.isLearner = learner
            let response = try await etcd.call(
                "/etcdserverpb.Cluster/MemberAdd", request, as: Etcdserverpb_MemberAddResponse.self, timeout: client.timeout)
            // etcdctl's lines: scripts (and operators) take the ETCD_* block
            // as it is; `ensemble serve` reads those variables as etcd does.
            func hex16(_ id: UInt64) -> String {
                let digits = String(id, radix: 16)
                return String(repeating: " ", count: max(0, 16 - digits.count)) + digits
            }
            let cluster = response.members.flatMap { m in
                m.peerUrls.map { "\(m.id == response.member.id ? name : m.name)=\($0)" }
            }.joined(separator: ",")
            print("Member \(hex16(response.member.id)) added to cluster \(hex16(response.header.clusterID))")
            print("")
            print("ETCD_NAME=\"\(name)\"")
            print("ETCD_INITIAL_CLUSTER=\"\(cluster)\"")
            print("ETCD_INITIAL_ADVERTISE_PEER_URLS=\"\(request.peerUrls.joined(separator: ","))\"")
            print("ETCD_INITIAL_CLUSTER_STATE=\"existing\"")
            await etcd.connection.close()
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a member by its hex id.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The member's id (hex, as member list prints it).") var id: String

        func run() async throws {
            guard let memberID = UInt64(id, radix: 16) else { throw ValidationError("\(id) is not a hex member id") }
            let etcd = try await client.connect()
            var request = Etcdserverpb_MemberRemoveRequest()
            request.id = memberID
            _ = try await etcd.call(
                "/etcdserverpb.Cluster/MemberRemove", request, as: Etcdserverpb_MemberRemoveResponse.self, timeout: client.timeout)
            print("removed member \(id)")
            await etcd.connection.close()
        }
    }
}

/// `ensemble status`: every member's view, one line each.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show each endpoint's member id, role, term, indexes and size.")
    @OptionGroup var client: ClientOptions

    func run() async throws {
        print("ENDPOINT               MEMBER            LEADER  TERM  COMMIT  APPLIED  DB SIZE   VERSION         ERRORS")
        var unreachable = 0
        for endpoint in client.endpoints.split(separator: ",") {
            let name = String(endpoint)
            do {
                let etcd = try await ClientOptions.connect(name, tls: client.tls)
                let s = try await etcd.call(
                    "/etcdserverpb.Maintenance/Status", Etcdserverpb_StatusRequest(), as: Etcdserverpb_StatusResponse.self,
                    timeout: client.timeout)
                let role = s.leader == s.header.memberID ? "yes" : (s.isLearner ? "learner" : "no")
                print([pad(name, 22), pad(String(s.header.memberID, radix: 16), 17), pad(role, 7), pad("\(s.raftTerm)", 5),
                       pad("\(s.raftIndex)", 7), pad("\(s.raftAppliedIndex)", 8), pad(bytes(s.dbSize), 9),
                       pad(s.version, 15), s.errors.joined(separator: "; ")].joined(separator: " "))
                await etcd.connection.close()
            } catch {
                print("\(pad(name, 22)) unreachable: \(error)")
                unreachable += 1
            }
        }
        // As etcdctl endpoint status: a failure if any endpoint did not answer.
        if unreachable > 0 { throw ExitCode(1) }
    }

    func pad(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }

    func bytes(_ n: Int64) -> String {
        n >= 1 << 20 ? String(format: "%.1f MB", Double(n) / 1_048_576) : n >= 1 << 10 ? String(format: "%.1f kB", Double(n) / 1024) : "\(n) B"
    }
}
