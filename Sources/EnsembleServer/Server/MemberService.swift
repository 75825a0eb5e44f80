import Logging
import ServiceLifecycle

/// One member as a ServiceLifecycle service: `run()` starts it and returns,
/// after a clean stop, on graceful shutdown (SIGTERM/SIGINT in a
/// `ServiceGroup`) or when the member has been removed from the cluster.
public struct MemberService: Service {
    let configuration: MemberConfiguration
    let logger: Logger
    let started: @Sendable (EnsembleMember) -> Void

    public init(
        _ configuration: MemberConfiguration, logger: Logger, started: @escaping @Sendable (EnsembleMember) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.logger = logger
        self.started = started
    }

    public func run() async throws {
        // A joiner waits for the leader to contact it, and catches up, before
        // it serves: SIGTERM or Ctrl-C meanwhile ends that wait (it would
        // otherwise hold the shutdown until the group's deadline).
        let member: EnsembleMember
        do {
            member = try await cancelWhenGracefulShutdown { try await EnsembleMember.start(configuration, logger: logger) }
        } catch is CancellationError {
            logger.info("stopped before serving")
            return
        }
        started(member)
        await withGracefulShutdownHandler {
            await member.waitUntilRemoved()
        } onGracefulShutdown: {
            member.wakeWaiters()
        }
        if member.isRemoved {
            logger.notice("this member was removed from the cluster; stopping")
        } else {
            logger.info("stopping")
        }
        await member.shutdown()
        logger.info("stopped")
    }
}
