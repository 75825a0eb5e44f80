#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import Synchronization

/// etcd's `--logger` and `--log-outputs` for swift-log: one line per record,
/// as text (`capnslog`, etcd 3.4's default) or as JSON (`zap`, the format
/// log pipelines parse: `{"level":"info","ts":"…","logger":"ensemble",
/// "caller":"File.swift:12","msg":"…", metadata…}`), written to standard
/// error, standard output or files.
public struct LineLogHandler: LogHandler {
    public enum Format: String, Sendable {
        /// `capnslog`: `<time> <level> <label> : <metadata> <message>`.
        case text
        /// `zap`: one JSON object per line.
        case json

        /// etcd's `--logger` names.
        public init?(logger: String) {
            switch logger.lowercased() {
            case "capnslog", "text": self = .text
            case "zap", "json": self = .json
            default: return nil
            }
        }
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    let format: Format
    let outputs: LogOutputs

    public init(label: String, format: Format, outputs: LogOutputs) {
        self.label = label
        self.format = format
        self.outputs = outputs
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { _, new in new } }
        if let error = event.error { all["error"] = "\(error)" }
        let line: String
        switch format {
        case .text:
            let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            line = "\(Self.timestamp()) \(Self.name(event.level)) \(label) :\(fields.isEmpty ? "" : " " + fields) \(event.message)\n"
        case .json:
            var json = "{\"level\":\"\(Self.name(event.level))\",\"ts\":\"\(Self.timestamp())\",\"logger\":"
            Self.quote(label, into: &json)
            json += ",\"caller\":"
            Self.quote("\(event.file.split(separator: "/").last ?? ""):\(event.line)", into: &json)
            json += ",\"msg\":"
            Self.quote("\(event.message)", into: &json)
            for (key, value) in all.sorted(by: { $0.key < $1.key }) where !Self.zapFields.contains(key) {
                json += ","
                Self.quote(key, into: &json)
                json += ":"
                Self.encode(value, into: &json)
            }
            line = json + "}\n"
        }
        outputs.write(line)
    }

    /// The fields every JSON line starts with; metadata cannot repeat them.
    static let zapFields: Set<String> = ["level", "ts", "logger", "caller", "msg"]

    /// zap's level names (swift-log's `warning` is zap's `warn`).
    static func name(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: return "debug"
        case .info, .notice: return "info"
        case .warning: return "warn"
        case .error: return "error"
        case .critical: return "fatal"
        }
    }

    /// UTC, milliseconds, ISO 8601 (zap's ISO8601TimeEncoder).
    static func timestamp(_ now: Date = Date()) -> String {
        let millis = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
        // Floored, so that times before 1970 count back from a day's start.
        let days = millis >= 0 ? millis / 86_400_000 : (millis - 86_399_999) / 86_400_000
        let msOfDay = millis - days * 86_400_000
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ n: Int64, _ width: Int) -> String {
            let digits = String(n)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let seconds = msOfDay / 1000
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(seconds / 3600, 2)):\(pad(seconds / 60 % 60, 2)):"
            + "\(pad(seconds % 60, 2)).\(pad(msOfDay % 1000, 3))Z"
    }

    static func encode(_ value: Logger.MetadataValue, into json: inout String) {
        switch value {
        case let .string(text): quote(text, into: &json)
        case let .stringConvertible(item): quote(item.description, into: &json)
        case let .array(items):
            json += "["
            for (i, item) in items.enumerated() {
                if i > 0 { json += "," }
                encode(item, into: &json)
            }
            json += "]"
        case let .dictionary(fields):
            json += "{"
            for (i, (key, item)) in fields.sorted(by: { $0.key < $1.key }).enumerated() {
                if i > 0 { json += "," }
                quote(key, into: &json)
                json += ":"
                encode(item, into: &json)
            }
            json += "}"
        }
    }

    /// `text` as a JSON string (RFC 8259 escapes).
    static func quote(_ text: String, into json: inout String) {
        json += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": json += "\\\""
            case "\\": json += "\\\\"
            case "\n": json += "\\n"
            case "\r": json += "\\r"
            case "\t": json += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                json += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: json.unicodeScalars.append(scalar)
            }
        }
        json += "\""
    }
}

/// Where log lines go (etcd's `--log-outputs`): `default` or `stderr`,
/// `stdout`, or file paths (appended to, created if missing). A line is
/// written whole with one `write` per output, under a lock, so lines from
/// different threads never interleave.
public final class LogOutputs: Sendable {
    private let descriptors: Mutex<[Int32]>

    /// Opens `outputs`; throws with the path that cannot be opened.
    public init(_ outputs: [String]) throws(LogOutputError) {
        var fds: [Int32] = []
        for output in outputs.isEmpty ? ["default"] : outputs {
            switch output {
            case "default", "stderr": fds.append(2)
            case "stdout": fds.append(1)
            default:
                let fd = open(output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw LogOutputError(path: output, reason: String(cString: strerror(errno))) }
                fds.append(fd)
            }
        }
        descriptors = Mutex(fds)
    }

    func write(_ line: String) {
        let bytes = Array(line.utf8)
        descriptors.withLock { fds in
            for fd in fds { writeWhole(fd, bytes) }
        }
    }
}

/// Writes all of `bytes` to `fd`, retrying short writes; gives up silently on
/// an error (a log that cannot be written must not stop the member).
private func writeWhole(_ fd: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { buffer in
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let n = write(fd, base + done, buffer.count - done)
            if n < 0, errno == EINTR { continue }
            if n <= 0 { return }
            done += n
        }
    }
}

public struct LogOutputError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "--log-outputs: cannot open '\(path)' for appending: \(reason)" }
}
