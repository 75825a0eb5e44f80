import Foundation

/// One network namespace per member, each joined to the root namespace by a
/// veth pair (10.77.<n>.1 root side, 10.77.<n>.2 member side) and routed
/// through it. Clients in the root namespace reach every member; a partition
/// blackholes the routes between members inside their namespaces, so peers
/// are cut while clients are not — the case a stale leader must survive.
/// Needs root and `ip` (iproute2); its absence is a failure, never a skip.
final class NetworkNamespaces: @unchecked Sendable {
    let tag = String(UUID().uuidString.prefix(4)).lowercased()
    let count: Int
    let ip: String
    /// A /16 of its own for each set of namespaces in this process.
    private let subnet: Int

    init(count: Int = 3) throws {
        guard let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else { throw EtcdMissing(reason: "ip (iproute2) is required for partition tests: apt-get install -y iproute2") }
        self.ip = ip
        self.count = count
        subnet = Int.random(in: 100...250)
        try Self.write("1", to: "/proc/sys/net/ipv4/ip_forward")
        for i in 0..<count {
            let ns = name(of: i)
            try run([ip, "netns", "add", ns])
            try run([ip, "link", "add", "ve\(tag)\(i)", "type", "veth", "peer", "name", "vp\(tag)\(i)"])
            try run([ip, "link", "set", "vp\(tag)\(i)", "netns", ns])
            try run([ip, "addr", "add", "10.\(subnet).\(i).1/24", "dev", "ve\(tag)\(i)"])
            try run([ip, "link", "set", "ve\(tag)\(i)", "up"])
            try run([ip, "netns", "exec", ns, ip, "addr", "add", "\(address(of: i))/24", "dev", "vp\(tag)\(i)"])
            try run([ip, "netns", "exec", ns, ip, "link", "set", "vp\(tag)\(i)", "up"])
            try run([ip, "netns", "exec", ns, ip, "link", "set", "lo", "up"])
            try run([ip, "netns", "exec", ns, ip, "route", "add", "default", "via", "10.\(subnet).\(i).1"])
        }
    }

    func name(of i: Int) -> String { "ens\(tag)\(i)" }
    func address(of i: Int) -> String { "10.\(subnet).\(i).2" }

    /// Cuts member `i` off from every other member (both directions: its
    /// routes to them are blackholed, so neither connections nor replies pass).
    func isolate(_ i: Int) throws {
        for j in 0..<count where j != i {
            try run([ip, "netns", "exec", name(of: i), ip, "route", "add", "blackhole", "\(address(of: j))/32"])
            try run([ip, "netns", "exec", name(of: j), ip, "route", "add", "blackhole", "\(address(of: i))/32"])
        }
    }

    func heal(_ i: Int) throws {
        for j in 0..<count where j != i {
            try run([ip, "netns", "exec", name(of: i), ip, "route", "del", "blackhole", "\(address(of: j))/32"])
            try run([ip, "netns", "exec", name(of: j), ip, "route", "del", "blackhole", "\(address(of: i))/32"])
        }
    }

    func remove() {
        for i in 0..<count { try? run([ip, "netns", "del", name(of: i)]) }
    }

    private func run(_ arguments: [String]) throws {
        let (status, output) = try runProcessBlocking(arguments[0], Array(arguments.dropFirst()))
        guard status == 0 else {
            throw EtcdMissing(reason: "\(arguments.joined(separator: " ")) failed: \(output)")
        }
    }

    private static func write(_ value: String, to path: String) throws {
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw EtcdMissing(reason: "cannot write \(path) (partition tests need root)")
        }
        handle.write(Data(value.utf8))
        try handle.close()
    }
}
