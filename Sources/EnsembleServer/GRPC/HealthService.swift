import EnsembleAPI
import Raft
import SwiftProtobuf

/// The standard gRPC health service (grpc.health.v1.Health/Check): SERVING
/// while the member is running and knows a leader, NOT_SERVING otherwise
/// (load balancers and Kubernetes probes use it).
public struct HealthService: Sendable {
    let node: NodeLoop<KVReplica>

    public init(node: NodeLoop<KVReplica>) {
        self.node = node
    }

    public func register(on router: inout GRPCRouter) {
        let service = self
        router.unary["/grpc.health.v1.Health/Check"] = .direct { bytes, reply in
            reply(service.check(bytes).map(GRPCResponse.init(bytes:)))
        }
    }

    func check(_ bytes: [UInt8]) -> Result<[UInt8], GRPCStatus> {
        guard let request = try? Grpc_Health_V1_HealthCheckRequest(serializedBytes: bytes) else {
            return .failure(.invalidArgument("malformed HealthCheckRequest"))
        }
        // The empty name is the whole server; etcd registers no other.
        guard request.service.isEmpty else {
            return .failure(.notFound("unknown service"))
        }
        let status = node.status
        var response = Grpc_Health_V1_HealthCheckResponse()
        response.status = status.running && status.leader != .none ? .serving : .notServing
        return KVService.serialize(response)
    }
}
