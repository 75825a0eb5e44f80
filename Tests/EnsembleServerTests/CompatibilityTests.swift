import EnsembleServer
import Foundation
import Testing

/// The compatibility suite: the same etcdctl scenarios against a real etcd 3.4
/// cluster and against Ensemble, outputs normalized (ids, terms, timings) and
/// compared line by line. Both clusters start empty, so revisions must match
/// exactly.
@Suite(.serialized, .timeLimit(.minutes(3))) struct CompatibilityTests {
    /// One etcdctl invocation; `input` goes to standard input (txn).
    struct Step: CustomStringConvertible {
        var arguments: [String]
        var input: String?
        init(_ arguments: String..., input: String? = nil) {
            self.arguments = arguments
            self.input = input
        }
        var description: String { "etcdctl " + arguments.joined(separator: " ") }
    }

    static let scenario: [Step] = [
        Step("put", "foo", "bar"),
        Step("put", "foo", "baz", "--prev-kv"),
        Step("put", "fop", "1"),
        Step("put", "fox", "2"),
        Step("put", "zoo", "3"),
        Step("get", "foo"),
        Step("get", "fo", "--prefix"),
        Step("get", "fo", "--prefix", "--keys-only"),
        Step("get", "fo", "--prefix", "--print-value-only"),
        Step("get", "fo", "--prefix", "--limit=2"),
        Step("get", "fo", "--prefix", "--sort-by=VALUE", "--order=DESCEND"),
        Step("get", "fo", "--prefix", "--sort-by=MODIFY", "--order=ASCEND"),
        Step("get", "fo", "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--limit=1"),
        Step("get", "fop", "--from-key"),
        Step("get", "fo", "fp"),
        Step("get", "foo", "--rev=2"),
        Step("get", "foo", "--rev=1"),
        Step("get", "foo", "--rev=99"),
        Step("get", "foo", "-w", "json"),
        Step("get", "fo", "--prefix", "-w", "fields"),
        Step("get", "", "--from-key", "--keys-only", "--consistency=s"),
        Step("get", "nothing"),
        Step("get", "nothing", "-w", "json"),
        Step("put", "k", "v", "--lease=1234abcd"),
        Step("put", "", "v"),
        Step("put", "foo", "--ignore-value"),
        Step("put", "missing", "--ignore-value"),
        Step("del", "fox"),
        Step("del", "fox"),
        Step("del", "fo", "--prefix", "--prev-kv"),
        Step("del", "a", "--from-key"),
        Step("put", "counter", "1"),
        Step("txn", input: "value(\"counter\") = \"1\"\n\nput counter 2\nget counter\n\nput counter failed\n\n"),
        Step("txn", input: "value(\"counter\") = \"1\"\n\nput counter 3\n\nget counter\n\n"),
        Step("txn", "-w", "json", input: "mod(\"counter\") > \"0\"\n\nget counter\n\n\n"),
        Step("txn", input: "create(\"counter\") = \"0\"\n\n\nput counter x\nput counter y\n\n"),
        Step("compact", "3"),
        Step("get", "foo", "--rev=2"),
        Step("compact", "2"),
        Step("compact", "99"),
        Step("get", "counter", "-w", "json"),
        Step("lease", "timetolive", "1234"),
        Step("lease", "revoke", "1234"),
        Step("lease", "list"),
    ]

    /// Hides what legitimately differs between two clusters: member and
    /// cluster ids, lease ids, Raft terms and indexes, timings, versions.
    static func normalize(_ output: String) -> String {
        var text = output
        let rules: [(Regex<AnyRegexOutput>, String)] = [
            (try! Regex(#""(cluster_id|member_id|raft_term|raft_index|raft_applied_index)":\d+"#), "\"$1\":N"),
            (try! Regex(#""(ClusterID|MemberID|RaftTerm)" : \d+"#), "\"$1\" : N"),
            // Before hex ids: a decimal lease id may be 16 digits long.
            (try! Regex(#""(lease|ID)":\d+"#), "\"$1\":N"),
            (try! Regex(#"\b[0-9a-f]{16}\b"#), "<id>"),
            (try! Regex(#"took = [0-9.]+[a-zµ]+"#), "took = T"),
            // clientv3's retry warning: time, client instance and port differ.
            (try! Regex(#""ts":"[^"]*""#), "\"ts\":T"),
            (try! Regex(#"remaining\(\d+s\)"#), "remaining(Ns)"),
            (try! Regex(#""target":"endpoint://client-[^"]*""#), "\"target\":E"),
        ]
        for (pattern, replacement) in rules {
            text = text.replacing(pattern) { match in
                var out = replacement
                if out.contains("$1"), match.output.count > 1, let group = match.output[1].substring {
                    out = out.replacingOccurrences(of: "$1", with: String(group))
                }
                return out
            }
        }
        return text
    }

    @Test func etcdctlScenarioMatchesRealEtcd() async throws {
        let etcd = try await EtcdCluster()
        defer { etcd.stop() }
        let f = try await DevClusterFixture()
        let endpoints = f.cluster.endpoints
        var differences: [String] = []
        for step in Self.scenario {
            let (etcdStatus, etcdOutput) = try await etcdctl(endpoints: etcd.endpoints, step.arguments, input: step.input)
            let step = step
            let (ourStatus, ourOutput) = try await withCheckedThrowingContinuation { continuation in
                Thread {
                    continuation.resume(with: Result { try etcdctlBlocking(endpoints: endpoints, step.arguments, input: step.input) })
                }.start()
            }
            let expected = Self.normalize(etcdOutput)
            let actual = Self.normalize(ourOutput)
            if expected != actual || etcdStatus != ourStatus {
                differences.append("\(step)\n  etcd (exit \(etcdStatus)):\n\(expected)\n  ensemble (exit \(ourStatus)):\n\(actual)")
            }
        }
        #expect(differences.isEmpty, "\(differences.count) of \(Self.scenario.count) steps differ:\n\(differences.joined(separator: "\n"))")
        await f.close()
    }

    /// Leases and watches: ids differ, so each cluster's own lease id is used
    /// in its commands; a watch replaying history is compared after it settles.
    @Test func leaseAndWatchMatchRealEtcd() async throws {
        let etcd = try await EtcdCluster()
        defer { etcd.stop() }
        let f = try await DevClusterFixture()
        let ours = f.cluster.endpoints
        func both(_ arguments: (String) -> [String], lease: (etcd: String, ours: String) = ("", "")) async throws -> (String, String) {
            let theirs = try await etcdctl(endpoints: etcd.endpoints, arguments(lease.etcd)).output
            let args = arguments(lease.ours)
            let mine = try await withCheckedThrowingContinuation { continuation in
                Thread { continuation.resume(with: Result { try etcdctlBlocking(endpoints: ours, args).output }) }.start()
            }
            return (Self.normalize(theirs), Self.normalize(mine))
        }
        var (theirs, mine) = try await both { _ in ["lease", "grant", "100"] }
        #expect(theirs == mine, "\(theirs)\n---\n\(mine)")
        // The id from "lease <id> granted …" (etcdctl may print a client warning first).
        func grant(_ endpoints: String) async throws -> String {
            let output = try await etcdctl(endpoints: endpoints, ["lease", "grant", "100"]).output
            let id = output.firstMatch(of: #/lease ([0-9a-f]+) granted/#).map { String($0.1) }
            return try #require(id, "no lease granted: \(output)")
        }
        let ids = (try await grant(etcd.endpoints), try await grant(ours))
        var steps: [[String]] = [
            ["put", "w/a", "1", "--lease=ID"], ["put", "w/b", "2"], ["put", "w/a", "3", "--lease=ID"],
            ["lease", "timetolive", "ID", "--keys"], ["lease", "keep-alive", "--once", "ID"],
            ["get", "w/", "--prefix", "-w", "json"], ["del", "w/b"], ["lease", "revoke", "ID"],
            ["get", "w/", "--prefix"], ["lease", "timetolive", "ID"],
        ]
        steps.append(["lease", "list"])
        for step in steps {
            (theirs, mine) = try await both({ id in step.map { $0.replacingOccurrences(of: "ID", with: id) } }, lease: ids)
            #expect(theirs == mine, "etcdctl \(step.joined(separator: " "))\netcd:\n\(theirs)\nensemble:\n\(mine)")
        }
        // The whole history, replayed by a watch from revision 1.
        let etcdWatch = try EtcdctlProcess(endpoints: etcd.endpoints, ["watch", "w/", "--prefix", "--rev=1", "--prev-kv"])
        let ourWatch = try EtcdctlProcess(endpoints: ours, ["watch", "w/", "--prefix", "--rev=1", "--prev-kv"])
        _ = await etcdWatch.waitFor(timeout: .seconds(3)) { $0.components(separatedBy: "DELETE").count == 4 }
        _ = await ourWatch.waitFor(timeout: .seconds(3)) { $0.components(separatedBy: "DELETE").count == 4 }
        etcdWatch.stop()
        ourWatch.stop()
        #expect(etcdWatch.text == ourWatch.text && !ourWatch.text.isEmpty, "etcd:\n\(etcdWatch.text)\nensemble:\n\(ourWatch.text)")
        await f.close()
    }
}
