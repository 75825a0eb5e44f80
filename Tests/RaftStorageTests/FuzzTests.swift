import Foundation
import Raft
import Testing
@testable import RaftStorage

@Suite struct FuzzTests {
    /// Random damage to WAL files (bit flips, truncations, garbage or zeros
    /// appended, deleted segments): open either succeeds with a state the storage
    /// actually passed through, or throws a WALError. It never traps, and never
    /// produces a mix of states.
    @Test func randomDamageNeverYieldsAnInventedState() throws {
        try withTempDir(inMemory: true) { dir in
            let options = DiskStorage.Options(segmentSize: 600)
            let source = dir.sub("source")
            var rng = SeededRandom(seed: 0xE45E_4B1E)
            var states: [LogState] = []
            try withStorage(source, options: options) { s throws in
                states.append(try LogState(s))
                var term: UInt64 = 1
                for k in 1...40 {
                    if k == 20 {
                        let at = s.lastIndex - 2
                        try s.saveSnapshot(Snapshot(
                            metadata: SnapshotMetadata(index: at, term: try s.term(at: at), confState: ConfState(voters: [1])),
                            data: [1]))
                        states.append(try LogState(s))
                    }
                    if k == 30 {
                        // A Ready installing a leader's snapshot beyond the log.
                        term += 1
                        let at = s.lastIndex + 3
                        try s.append(
                            hardState: HardState(term: term, vote: 0, commit: at), entries: [],
                            snapshot: Snapshot(metadata: SnapshotMetadata(index: at, term: term, confState: ConfState(voters: [1])), data: [3]))
                        states.append(try LogState(s))
                    }
                    let overwrite = s.lastIndex > s.firstIndex + 2 && Int.random(in: 0..<6, using: &rng) == 0
                    if overwrite { term += 1 }
                    let start = overwrite ? s.lastIndex - 1 : s.lastIndex + 1
                    let n = UInt64.random(in: 1...3, using: &rng)
                    try s.append(
                        hardState: HardState(term: term, vote: UInt64(k % 3), commit: s.firstIndex - 1),
                        entries: makeEntries(start...(start + n - 1), term: term, size: Int.random(in: 0...30, using: &rng)))
                    states.append(try LogState(s))
                    if k % 4 == 0 { try s.sync() }
                }
            }
            let files = listFiles(source + "/wal")
            #expect(files.count >= 4)
            let originals = files.map { readBytes(source + "/wal/" + $0) }

            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(3)
            var iterations = 0, opened = 0, refused = 0
            while clock.now < deadline && iterations < 3000 {
                iterations += 1
                var contents = originals
                var present = [Bool](repeating: true, count: files.count)
                var onlyAppendedToLast = true
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    let f = Int.random(in: 0..<files.count, using: &rng)
                    let last = files.count - 1
                    switch Int.random(in: 0..<6, using: &rng) {
                    case 0, 1:  // flip a byte
                        guard !contents[f].isEmpty else { continue }
                        contents[f][Int.random(in: 0..<contents[f].count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                        onlyAppendedToLast = false
                    case 2:  // truncate
                        contents[f] = Array(contents[f].prefix(Int.random(in: 0...contents[f].count, using: &rng)))
                        onlyAppendedToLast = false
                    case 3:  // garbage on the last segment
                        contents[last] += (0..<Int.random(in: 1...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                    case 4:  // zeros on the last segment (file extended by a crash)
                        contents[last] += [UInt8](repeating: 0, count: Int.random(in: 1...600, using: &rng))
                    default:  // delete a segment
                        present[f] = false
                        onlyAppendedToLast = false
                    }
                }
                let target = dir.sub("it\(iterations)")
                copyDataDir(from: source, to: target)
                for (i, name) in files.enumerated() {
                    let path = target + "/wal/" + name
                    if present[i] { writeBytes(path, contents[i]) } else { unlink(path) }
                }
                do {
                    let s = try DiskStorage.open(directory: target, options: options)
                    let state = try LogState(s)
                    #expect(states.contains(state), "iteration \(iterations): recovered a state never written: \(state)")
                    if onlyAppendedToLast {
                        #expect(state == states.last, "iteration \(iterations): appended junk lost data")
                    }
                    if iterations % 10 == 0 {
                        try s.append(hardState: HardState(term: 99), entries: makeEntries((s.lastIndex + 1)...(s.lastIndex + 1), term: 99))
                        try s.close()
                        let again = try DiskStorage.open(directory: target, options: options)
                        #expect(again.hardState == HardState(term: 99))
                        #expect(try again.term(at: again.lastIndex) == 99)
                        try again.close()
                    } else {
                        try s.close()
                    }
                    opened += 1
                } catch is WALError {
                    refused += 1
                }
                removeTree(target)
            }
            #expect(opened > 0 && refused > 0, "opened \(opened), refused \(refused) of \(iterations)")
        }
    }
}
