/// What a client asks to watch, as etcd's `WatchCreateRequest`.
public struct WatchRequest: Sendable, Hashable {
    public var key: [UInt8]
    /// Same encoding as ranges: empty for one key, `[0]` for every key `>= key`.
    public var rangeEnd: [UInt8] = []
    /// First revision to deliver; 0 or less for "changes after now".
    public var startRevision: Int64 = 0
    /// Ask for periodic empty responses while idle.
    public var progressNotify = false
    public var filterPuts = false
    public var filterDeletes = false
    public var prevKV = false
    /// A client-chosen id (etcd 3.4); 0 lets the hub pick the next free one.
    public var watchID: Int64 = 0
    /// Split large responses into fragments instead of sending them whole.
    public var fragment = false

    public init(key: [UInt8], rangeEnd: [UInt8] = [], startRevision: Int64 = 0) {
        self.key = key
        self.rangeEnd = rangeEnd
        self.startRevision = startRevision
    }
}

/// What a watch stream receives, as etcd's `WatchResponse` (the header revision
/// is `revision`).
public struct WatchResponse: Sendable, Hashable {
    public var watchID: Int64
    public var revision: Int64
    public var created = false
    public var canceled = false
    public var compactRevision: Int64 = 0
    public var cancelReason = ""
    /// More fragments of the same batch follow.
    public var fragment = false
    public var events: [Event] = []

    public init(watchID: Int64, revision: Int64) {
        self.watchID = watchID
        self.revision = revision
    }

    /// etcd's id for a progress response addressed to the whole stream.
    public static let streamWideID: Int64 = -1
}

/// Identifies one client watch stream (a gRPC Watch call).
public typealias WatchStreamID = UInt64

/// A response and the stream it goes to.
public struct WatchDelivery: Sendable, Hashable {
    public var stream: WatchStreamID
    public var response: WatchResponse
}
