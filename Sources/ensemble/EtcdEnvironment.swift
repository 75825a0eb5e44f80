import Foundation

/// etcd reads every flag also from an `ETCD_<FLAG>` environment variable
/// (`ETCD_DATA_DIR` for `--data-dir`; Docker images and /etc/default/etcd set
/// them). `ensemble serve` does the same, with etcd 3.4's rules: a variable
/// whose flag is also on the command line is an error, an empty one is not
/// used, and an `ETCD_` variable naming no flag is reported and ignored.
enum EtcdEnvironment {
    /// `serve`'s arguments with the flags `environment` sets appended, and
    /// the lines etcd would log about them.
    static func apply(
        to arguments: [String], environment: [String: String], flags: Set<String>
    ) -> Result<(arguments: [String], notes: [String]), EtcdEnvironmentError> {
        var given: Set<String> = []
        for argument in arguments where argument.hasPrefix("--") {
            given.insert(String(argument.dropFirst(2).prefix { $0 != "=" }))
        }
        var added: [String] = []
        var notes: [String] = []
        for (key, value) in environment.sorted(by: { $0.key < $1.key }) where key.hasPrefix("ETCD_") {
            let flag = key.dropFirst(5).lowercased().replacingOccurrences(of: "_", with: "-")
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
