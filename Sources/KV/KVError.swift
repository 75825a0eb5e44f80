/// Errors from the key–value store, carrying etcd's exact messages (clients match
/// on the message text; etcd's `rpctypes` map them back to typed errors).
public enum KVError: Error, Sendable, Hashable, CustomStringConvertible {
    case compacted
    case futureRevision
    case emptyKey
    case keyNotFound
    case leaseNotFound
    case duplicateKeyInTxn
    case tooManyOperations
    /// `ignore_value` together with a value.
    case valueProvided
    /// `ignore_lease` together with a lease.
    case leaseProvided
    /// Over the request size limit; raised by the API layer (etcd: 1.5 MiB).
    case valueTooLarge
    /// The space quota is exhausted (the NOSPACE alarm is raised).
    case noSpace
    /// The CORRUPT alarm is raised: members disagree on their data.
    case corrupt

    /// The gRPC status code etcd answers with.
    public var grpcCode: GRPCCode {
        switch self {
        case .compacted, .futureRevision: .outOfRange
        case .emptyKey, .keyNotFound, .duplicateKeyInTxn, .tooManyOperations, .valueProvided, .leaseProvided, .valueTooLarge:
            .invalidArgument
        case .leaseNotFound: .notFound
        case .noSpace: .resourceExhausted
        case .corrupt: .dataLoss
        }
    }

    public var description: String {
        switch self {
        case .compacted: "etcdserver: mvcc: required revision has been compacted"
        case .futureRevision: "etcdserver: mvcc: required revision is a future revision"
        case .emptyKey: "etcdserver: key is not provided"
        case .keyNotFound: "etcdserver: key not found"
        case .leaseNotFound: "etcdserver: requested lease not found"
        case .duplicateKeyInTxn: "etcdserver: duplicate key given in txn request"
        case .tooManyOperations: "etcdserver: too many operations in txn request"
        case .valueProvided: "etcdserver: value is provided"
        case .leaseProvided: "etcdserver: lease is provided"
        case .valueTooLarge: "etcdserver: request is too large"
        case .noSpace: "etcdserver: mvcc: database space exceeded"
        case .corrupt: "etcdserver: corrupt cluster"
        }
    }
}

/// The gRPC status codes the store's errors map to.
public enum GRPCCode: Int, Sendable {
    case invalidArgument = 3
    case notFound = 5
    case resourceExhausted = 8
    case outOfRange = 11
    case dataLoss = 15
}
