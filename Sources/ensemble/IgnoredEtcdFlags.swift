import EnsembleServer

/// etcd 3.4 flags that change nothing Ensemble does (`--max-txn-ops`,
/// `--enable-v2`, `--pre-vote`, …, the config file's ignored keys): taken off
/// `serve`'s command line with a note, so an etcd unit file or manifest runs
/// unchanged instead of failing on an unknown option.
enum IgnoredEtcdFlags {
    /// Go boolean flags: given bare or as `--flag=value`, never with the
    /// value as the next argument.
    static let booleans: Set<String> = [
        "strict-reconfig-check", "enable-v2", "enable-pprof", "debug", "experimental-enable-lease-checkpoint",
        "pre-vote", "enable-grpc-gateway", "unsafe-no-fsync", "initial-election-tick-advance",
    ]

    static func remove(from arguments: [String]) -> (arguments: [String], notes: [String]) {
        var kept: [String] = []
        var notes: [String] = []
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--") else {
                kept.append(argument)
                continue
            }
            let name = String(argument.dropFirst(2).prefix { $0 != "=" })
            guard MemberConfiguration.ignoredEtcdKeys.contains(name) else {
                kept.append(argument)
                continue
            }
            // `--flag value`: the value goes too.
            // (Never another flag: a value does not start with `--`.)
            if !argument.contains("="), !booleans.contains(name), index < arguments.endIndex, !arguments[index].hasPrefix("--") {
                index += 1
            }
            notes.append("--\(name) is an etcd flag with no effect in Ensemble; ignored")
        }
        return (kept, notes)
    }
}
