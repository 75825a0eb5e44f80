import EnsembleServer
import Foundation
import Synchronization

/// A tiny replicated state machine for node tests: string registers with put,
/// delete and compare-and-swap, commands encoded as `put\u{0}key\u{0}value`,
/// `del\u{0}key` and `cas\u{0}key\u{0}expected\u{0}value` ("\u{1}" as
/// expected means absent).
final class RegisterMachine: ReplicatedStateMachine {
    private(set) var values: [String: String] = [:]
    /// The values when this member heard it leads (``roleChanged(isLeader:)``); nil while it does not.
    private(set) var valuesAtPromotion: [String: String]?

    func roleChanged(isLeader: Bool) {
        valuesAtPromotion = isLeader ? values : nil
    }

    /// What ran on the apply thread, for ordering tests ("tick" per leader tick).
    var trace: [String] = []

    func leaderTick() -> [[UInt8]] {
        trace.append("tick")
        return []
    }

    static func put(_ key: String, _ value: String) -> [UInt8] { Array("put\u{0}\(key)\u{0}\(value)".utf8) }
    static func delete(_ key: String) -> [UInt8] { Array("del\u{0}\(key)".utf8) }
    static func cas(_ key: String, _ expected: String?, _ value: String) -> [UInt8] {
        Array("cas\u{0}\(key)\u{0}\(expected ?? "\u{1}")\u{0}\(value)".utf8)
    }

    /// Takes `milliseconds` to apply: a stand-in for a huge DeleteRange.
    static func sleep(_ milliseconds: Int) -> [UInt8] { Array("sleep\u{0}\(milliseconds)".utf8) }

    /// "ok", or for cas "swapped"/"kept", for sleep "slept".
    func apply(_ data: [UInt8], index: UInt64) -> String {
        let parts = String(decoding: data, as: UTF8.self).split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
        switch parts.first {
        case "put" where parts.count == 3:
            values[parts[1]] = parts[2]
            return "ok"
        case "del" where parts.count == 2:
            values[parts[1]] = nil
            return "ok"
        case "cas" where parts.count == 4:
            let expected = parts[2] == "\u{1}" ? nil : parts[2]
            guard values[parts[1]] == expected else { return "kept" }
            values[parts[1]] = parts[3]
            return "swapped"
        case "sleep" where parts.count == 2:
            Thread.sleep(forTimeInterval: Double(parts[1]).map { $0 / 1000 } ?? 0)
            return "slept"
        default:
            return "bad command"
        }
    }

    func read(_ key: String) -> String? { values[key] }

    /// Keys and values: about what the snapshot takes.
    var approximateStateBytes: Int? { values.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count } }

    func snapshot() -> [UInt8] {
        (try? JSONEncoder().encode(values)).map(Array.init) ?? []
    }

    func restore(_ data: [UInt8]) throws {
        values = try JSONDecoder().decode([String: String].self, from: Data(data))
    }
}
