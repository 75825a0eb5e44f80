import EnsembleAPI
import SwiftProtobuf

/// What a learner serves, as etcd 3.4 (`isRPCSupportedForLearner`): a learner
/// does not vote and may lag the cluster by any amount, so it answers
/// Maintenance Status and serializable Range only; every other call, and
/// every stream, is refused with etcd's "etcdserver: rpc not supported for
/// learner" (UNAVAILABLE), so clients move to another member. The project's
/// own calls between members (`/ensemble.…`) are not gated.
enum LearnerGate {
    static let refusal = GRPCStatus.unavailable("etcdserver: rpc not supported for learner")

    /// Wraps every etcd route of `router`; `isLearner` is asked per call.
    static func install(on router: inout GRPCRouter, isLearner: @escaping @Sendable () -> Bool) {
        for (path, handler) in router.unary where !path.hasPrefix("/ensemble.") {
            router.unary[path] = .direct { request, reply in
                guard isLearner(), !servedByLearner(path, request) else { return handler.serve(request, reply) }
                reply(.failure(refusal))
            }
        }
        for (path, handler) in router.streaming where !path.hasPrefix("/ensemble.") {
            router.streaming[path] = { stream in
                isLearner() ? RefusedCall(stream, refusal) : handler(stream)
            }
        }
    }

    static func servedByLearner(_ path: String, _ request: [UInt8]) -> Bool {
        switch path {
        case "/etcdserverpb.Maintenance/Status":
            true
        case "/etcdserverpb.KV/Range":
            (try? Etcdserverpb_RangeRequest(serializedBytes: request))?.serializable == true
        default:
            false
        }
    }
}
