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
        let member = try await EnsembleMember.start(configuration, logger: logger)
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
