import CoreFoundation
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
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
/// a Kubernetes secret's symlink swap changes the inode) every
/// `checkInterval` on a queue of the context's own, which also reads them
/// when they change: a connection only takes the current context, and no
/// event loop waits for files or a TLS context being built. A change that
/// does not load — a file half written, a key that no longer matches its
/// certificate — keeps the previous context and is logged once per change.
/// Errors at creation are configuration errors: the member does not start.
/// The checks stop when the context is released.
public final class ReloadingTLSContext: Sendable {
    private struct Stamp: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modifiedSeconds: Int
        var modifiedNanoseconds: Int
    }

    private struct State {
        var context: NIOSSLContext
        var stamps: [Stamp?]
        /// The stamps of a change that failed to load (not retried until the files change again).
        var refused: [Stamp?]?
    }

    private let paths: [String]
    private let make: @Sendable () throws(ConfigurationError) -> NIOSSLContext
    private let logger: Logger
    private let checkInterval: Duration
    private let state: Mutex<State>
    private let queue = DispatchQueue(label: "ensemble-tls-reload")

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
        state = Mutex(State(context: try make(), stamps: stamps, refused: nil))
        scheduleCheck()
    }

    /// The context for a new connection: the files' latest loadable state.
    public func current() -> NIOSSLContext {
        state.withLock { $0.context }
    }

    private func scheduleCheck() {
        queue.asyncAfter(deadline: .now() + checkInterval.inSeconds) { [weak self] in
            guard let self else { return }
            self.check()
            self.scheduleCheck()
        }
    }

    /// Loads the files if they changed since they last loaded (or failed to).
    private func check() {
        let stamps = paths.map(Self.stamp)
        let changed = state.withLock { stamps != $0.stamps && stamps != $0.refused }
        guard changed else { return }
        do {
            let context = try make()
            state.withLock {
                $0.context = context
                $0.stamps = stamps
                $0.refused = nil
            }
            logger.notice("TLS files changed: new connections use them", metadata: ["files": "\(paths.joined(separator: ","))"])
        } catch {
            state.withLock { $0.refused = stamps }
            logger.error(
                "TLS files changed but do not load; keeping the previous ones",
                metadata: ["files": "\(paths.joined(separator: ","))", "error": "\(error)"])
        }
    }

    /// `stat` following symbolic links: a Kubernetes Secret mount's
    /// `tls.crt` is a fixed link into `..data/`, and rotation swaps what
    /// `..data` points to, which the link's own attributes (`lstat`, as
    /// FileManager reads them) never show (review finding).
    private static func stamp(_ path: String) -> Stamp? {
        guard let info = FileStat.of(path) else { return nil }
        return Stamp(
            device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
            modifiedSeconds: Int(modified(info).tv_sec), modifiedNanoseconds: Int(modified(info).tv_nsec))
    }

    #if canImport(Glibc)
    private static func modified(_ info: Glibc.stat) -> timespec {
        info.st_mtim
    }
    #else
    private static func modified(_ info: Darwin.stat) -> timespec {
        info.st_mtimespec
    }
    #endif
}
