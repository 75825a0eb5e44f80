@testable import EnsembleServer
import Foundation
import Logging
import Testing

/// `--logger` and `--log-outputs`: what a log pipeline reads.
@Suite struct LineLogHandlerTests {
    func lines(format: LineLogHandler.Format, _ body: (Logger) -> Void) throws -> [String] {
        let path = NSTemporaryDirectory() + "ensemble-log-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var logger = Logger(label: "ensemble") { label in
            LineLogHandler(label: label, format: format, outputs: try! LogOutputs([path]))
        }
        logger.logLevel = .debug
        logger[metadataKey: "name"] = "n1"
        body(logger)
        return try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    /// zap's shape: one object per line, level/ts/caller/msg, then the
    /// metadata; escapes survive a JSON parser.
    @Test func zapWritesOneJSONObjectPerLine() throws {
        let lines = try lines(format: .json) { logger in
            logger.warning("disk \"slow\"\n\tretrying", metadata: ["took": "1.5s", "peers": ["a", "b"], "ids": ["x": "1"]])
            logger.debug("details")
        }
        #expect(lines.count == 2)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(object["level"] as? String == "warn")
        #expect(object["msg"] as? String == "disk \"slow\"\n\tretrying")
        #expect(object["logger"] as? String == "ensemble")
        #expect((object["caller"] as? String)?.hasPrefix("LineLogHandlerTests.swift:") == true, "\(object["caller"] ?? "none")")
        #expect(object["name"] as? String == "n1" && object["took"] as? String == "1.5s")
        #expect(object["peers"] as? [String] == ["a", "b"] && (object["ids"] as? [String: String]) == ["x": "1"])
        let ts = try #require(object["ts"] as? String)
        #expect(ts.count == 24 && ts.hasSuffix("Z") && ts.contains("T"), "\(ts)")
        #expect(lines[1].hasPrefix(#"{"level":"debug","#))
    }

    @Test func capnslogWritesText() throws {
        let lines = try lines(format: .text) { $0.info("serving", metadata: ["clients": "http://127.0.0.1:2379"]) }
        #expect(lines.count == 1)
        #expect(lines[0].hasSuffix(" info ensemble : clients=http://127.0.0.1:2379 name=n1 serving"), "\(lines[0])")
    }

    @Test func timestampsAreUTCWithMilliseconds() {
        #expect(LineLogHandler.timestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(LineLogHandler.timestamp(Date(timeIntervalSince1970: 1_795_510_166.7229)) == "2026-11-24T08:49:26.722Z")
        #expect(LineLogHandler.timestamp(Date(timeIntervalSince1970: 951_782_400.5)) == "2000-02-29T00:00:00.500Z")
        #expect(LineLogHandler.timestamp(Date(timeIntervalSince1970: -0.25)) == "1969-12-31T23:59:59.750Z")
    }

    @Test func loggerNamesAndUnopenableOutputs() {
        #expect(LineLogHandler.Format(logger: "zap") == .json && LineLogHandler.Format(logger: "capnslog") == .text)
        #expect(LineLogHandler.Format(logger: "loud") == nil)
        #expect(throws: LogOutputError.self) { try LogOutputs(["/nonexistent/dir/log"]) }
    }
}
