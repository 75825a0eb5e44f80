import Foundation

/// etcd reads every flag also from an `ETCD_<FLAG>` environment variable
/// (`ETCD_DATA_DIR` for `--data-dir`; Docker images and /etc/default/etcd set
/// them). `ensemble serve` does the same, with etcd 3.4's rules: a variable
/// whose flag is also on the command line is an error, an empty one is not
/// used, and an `ETCD_` variable naming no flag is reported and ignored.
enum EtcdEnvironment {
    /// `serve`'s arguments with the flags `environment` sets appended, and
    /// the lines etcd would log about them.
    /// `defaultOnly`: etcd settings Ensemble cannot honour, with the values
    /// that mean "off" (a variable setting one otherwise is an error, as the
    /// config file's key is — ignoring ETCD_DISCOVERY_SRV would found a
    /// one-member cluster on every node). With a config file (the flag or
    /// ETCD_CONFIG_FILE) etcd reads no other variable, and neither does this.
    static func apply(
        to arguments: [String], environment: [String: String], flags: Set<String>, defaultOnly: [String: Set<String>] = [:]
    ) -> Result<(arguments: [String], notes: [String]), EtcdEnvironmentError> {
        var given: Set<String> = []
        for argument in arguments where argument.hasPrefix("--") {
            given.insert(String(argument.dropFirst(2).prefix { $0 != "=" }))
        }
        if given.contains("config-file") { return .success((arguments, [])) }
        if let file = environment["ETCD_CONFIG_FILE"], !file.isEmpty {
            return .success((arguments + ["--config-file=\(file)"], ["recognized and used environment variable ETCD_CONFIG_FILE=\(file)"]))
        }
        var added: [String] = []
        var notes: [String] = []
        for (key, value) in environment.sorted(by: { $0.key < $1.key }) where key.hasPrefix("ETCD_") {
            let flag = key.dropFirst(5).lowercased().replacingOccurrences(of: "_", with: "-")
            if let defaults = defaultOnly[flag] {
                guard value.isEmpty || defaults.contains(value.lowercased()) else {
                    return .failure(EtcdEnvironmentError(description: "\(key)=\(value): --\(flag) is not supported by Ensemble (only etcd's default)"))
                }
                continue
            }
            guard flags.contains(flag) else {
                notes.append("unrecognized environment variable \(key)=\(value)")
                continue
            }
            if given.contains(flag) {
                return .failure(EtcdEnvironmentError(description:
                    "conflicting environment variable \"\(key)\" is shadowed by corresponding command-line flag "
                        + "(either unset environment variable or disable flag)"))
            }
            guard !value.isEmpty else { continue }
            added.append("--\(flag)=\(value)")
            notes.append("recognized and used environment variable \(key)=\(value)")
        }
        return .success((arguments + added, notes))
    }

    /// The long flag names in `help` (a command's help text).
    static func flagNames(inHelp help: String) -> Set<String> {
        Set(help.matches(of: /--([a-z0-9][a-z0-9-]*)/).map { String($0.1) }).subtracting(["help"])
    }
}

struct EtcdEnvironmentError: Error, CustomStringConvertible {
    var description: String
}
