import Dispatch
import Raft
import Synchronization

/// Reads the latest snapshot back from its file, in the background, for Raft
/// to send to a follower that fell behind the log. The snapshot's data is the
/// whole state machine — hundreds of megabytes for a large store — so it is
/// neither kept in memory between sends nor read on the caller's thread (the
/// node loop, whose heartbeats must not wait for a disk read).
///
/// ``snapshot(named:)`` answers at once: the snapshot if it has been read,
/// otherwise ``Raft/StorageError/snapshotTemporarilyUnavailable`` after
/// starting the read (Raft tries again on the follower's next answer, as
/// with etcd-io/raft's ErrSnapshotTemporarilyUnavailable). The copy read is
/// handed out once and then dropped, so memory goes back as soon as the
/// message carrying it is sent; another send reads the file again. A read
/// that failed is reported once as ``Raft/StorageError/io(_:)`` and not
/// tried again for ``retryAfter`` (a damaged file is not read at every
/// heartbeat); ``lastFailure`` keeps the reason for status and logs.
final class SnapshotReadBack: Sendable {
    private struct State {
        var name: SnapshotFile.Name?
        var snapshot: Snapshot?
        var loading = false
        var failure: String?
        var failedAt: ContinuousClock.Instant?
        var lastFailure: String?
    }

    /// How long after a failed read the next one waits.
    static let retryAfter: Duration = .seconds(5)

    private let directory: String
    private let state = Mutex(State())
    private let queue: DispatchQueue

    init(directory: String) {
        self.directory = directory
        self.queue = DispatchQueue(label: "ensemble-snapshot-read")
    }

    func snapshot(named name: SnapshotFile.Name) throws(StorageError) -> Snapshot {
        enum Next { case ready(Snapshot), failed(String), wait, start }
        let next = state.withLock { state -> Next in
            if state.name == name {
                if let snapshot = state.snapshot.take() {
                    state.name = nil
                    return .ready(snapshot)
                }
                if state.loading { return .wait }
                if let failure = state.failure.take() { return .failed(failure) }
                if let failedAt = state.failedAt, ContinuousClock.now - failedAt < Self.retryAfter { return .wait }
            }
            state = State(name: name, loading: true, lastFailure: state.lastFailure)
            return .start
        }
        switch next {
        case let .ready(snapshot): return snapshot
        case let .failed(why): throw .io(why)
        case .wait: throw .snapshotTemporarilyUnavailable
        case .start: break
        }
        let directory = directory
        queue.async { [state = self] in
            let result: Result<Snapshot, WALError>
            do throws(WALError) {
                result = .success(try SnapshotFile.load(directory: directory, name: name))
            } catch {
                result = .failure(error)
            }
            state.finished(name, result)
        }
        throw .snapshotTemporarilyUnavailable
    }

    private func finished(_ name: SnapshotFile.Name, _ result: Result<Snapshot, WALError>) {
        state.withLock { state in
            guard state.name == name else { return }
            state.loading = false
            switch result {
            case let .success(snapshot): state.snapshot = snapshot
            case let .failure(error):
                let why = "cannot read the snapshot at index \(name.index): \(error.description)"
                state.failure = why
                state.failedAt = .now
                state.lastFailure = why
            }
        }
    }

    /// Drops what was read: the latest snapshot changed.
    func forget() {
        state.withLock { $0 = State(lastFailure: $0.lastFailure) }
    }

    /// Why the last failed read failed, if one did.
    var lastFailure: String? { state.withLock { $0.lastFailure } }

    /// Waits for a read in progress (tests, and closing the storage).
    func waitForReads() {
        queue.sync {}
    }
}
