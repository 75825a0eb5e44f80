import Foundation
import Logging
import NIOSSL
import Synchronization

/// A TLS context made from PEM files and made again when they change, so a
/// rotated certificate, key or CA (cert-manager, a renewal script) takes
/// effect for new connections without a restart, as etcd reads its
/// certificate files at each handshake. Connections already open keep the
/// context they started with.
///
/// The files are looked at (`stat`: device, inode, size, modification time;
/// a Kubernetes secret's symlink swap changes the inode) at most once per
/// `checkInterval`, when a connection asks for the context. A change that
/// does not load — a file half written, a key that no longer matches its
/// certificate — keeps the previous context and is logged once per change.
/// Errors at creation are configuration errors: the member does not start.
public final class ReloadingTLSContext: Sendable {
    private struct Stamp: Equatable {
        var device: Int
        var inode: Int
        var size: Int
        var modified: Date
    }

    private struct State {
        var context: NIOSSLContext
        var stamps: [Stamp?]
        var checked: ContinuousClock.Instant
        /// The stamps of a change that failed to load (not retried until the files change again).
        var refused: [Stamp?]?
    }

    private let paths: [String]
    private let make: @Sendable () throws(ConfigurationError) -> NIOSSLContext
    private let logger: Logger
    private let checkInterval: Duration
    private let state: Mutex<State>

    /// Reads the files once with `make`; `paths` are the files it reads.
    public init(
        paths: [String], checkInterval: Duration = .seconds(1), logger: Logger = EnsembleMember.silent,
        make: @escaping @Sendable () throws(ConfigurationError) -> NIOSSLContext
    ) throws(ConfigurationError) {
        self.paths = paths.filter { !$0.isEmpty }
        self.make = make
        self.logger = logger
        self.checkInterval = checkInterval
        let stamps = self.paths.map(Self.stamp)
        state = Mutex(State(context: try make(), stamps: stamps, checked: .now, refused: nil))
    }

    /// The context for a new connection: the files' latest loadable state.
    public func current() -> NIOSSLContext {
        let now = ContinuousClock.now
        return state.withLock { state in
            guard now - state.checked >= checkInterval else { return state.context }
            state.checked = now
            let stamps = paths.map(Self.stamp)
            guard stamps != state.stamps, stamps != state.refused else { return state.context }
            do {
                state.context = try make()
                state.stamps = stamps
                state.refused = nil
                logger.notice("TLS files changed: new connections use them", metadata: ["files": "\(paths.joined(separator: ","))"])
            } catch {
                state.refused = stamps
                logger.error(
                    "TLS files changed but do not load; keeping the previous ones",
                    metadata: ["files": "\(paths.joined(separator: ","))", "error": "\(error)"])
            }
            return state.context
        }
    }

    private static func stamp(_ path: String) -> Stamp? {
        guard let info = try? FileManager.default.attributesOfItem(atPath: path) else { return nil }
        return Stamp(
            device: (info[.deviceIdentifier] as? NSNumber)?.intValue ?? 0,
            inode: (info[.systemFileNumber] as? NSNumber)?.intValue ?? 0,
            size: (info[.size] as? NSNumber)?.intValue ?? 0,
            modified: info[.modificationDate] as? Date ?? .distantPast)
    }
}
