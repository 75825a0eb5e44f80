// swift-tools-version: 6.1
import PackageDescription

// Upcoming features the style guide asks for; applied to every target.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Ensemble",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Raft", targets: ["Raft"]),
        .library(name: "RaftStorage", targets: ["RaftStorage"]),
        .library(name: "KV", targets: ["KV"]),
        .library(name: "Linearizability", targets: ["Linearizability"]),
        .library(name: "EnsembleClient", targets: ["EnsembleClient"]),
        .executable(name: "raft-sim", targets: ["raft-sim"]),
        .executable(name: "ensemble", targets: ["ensemble"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // Pure consensus state machine: no I/O, no clock, no threads.
        .target(name: "Raft", swiftSettings: swiftSettings),
        // Durable log: WAL segments, hard state, snapshot files, recovery.
        .target(name: "RaftStorage", dependencies: ["Raft", "Checksum"], swiftSettings: swiftSettings),
        // CRC-32C with the CPU's instructions (SSE4.2, AArch64 CRC), for RaftStorage.
        .target(name: "CCRC32C"),
        // CRC-32C for the WAL, snapshot files and the KV store's history files.
        .target(name: "Checksum", dependencies: ["CCRC32C"], swiftSettings: swiftSettings),
        // bbolt's file format (etcd's backend, `etcdctl snapshot` files): a writer and a reader, no I/O.
        .target(name: "Bolt", swiftSettings: swiftSettings),
        // The multi-version key–value state machine behind the etcd API (no I/O).
        .target(
            name: "KV",
            dependencies: [
                "Checksum", "Bolt", .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings),
        // Peer messaging: the wire codec and transports (in memory, and TCP over SwiftNIO).
        .target(
            name: "RaftTransport",
            dependencies: [
                "Raft",
                "LeanHTTP2",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // HTTP/2 as gRPC needs it, server and client side: a pure state machine
        // (header blocks decoded by NIOHPACK) beside the gRPC server's and client's I/O.
        .target(
            name: "LeanHTTP2",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ],
            swiftSettings: swiftSettings
        ),
        // The node runtime: the loop that drives Raft, storage and the state machine.
        .target(
            name: "EnsembleServer",
            dependencies: [
                "Raft", "RaftStorage", "RaftTransport", "KV", "Bolt", "Checksum", "EnsembleAPI", "EnsembleClient", "LeanHTTP2",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // A gRPC client (h2c on SwiftNIO) and typed etcd v3 calls: for tools, and for a
        // follower that forwards to its leader. Independent of the server.
        .target(
            name: "EnsembleClient",
            dependencies: [
                "EnsembleAPI", "LeanHTTP2",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ],
            swiftSettings: swiftSettings
        ),
        // `ensemble bench`: etcd's tools/benchmark workloads and report, over EnsembleClient.
        .target(
            name: "EnsembleBench",
            dependencies: [
                "EnsembleClient", "EnsembleAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        // Test support: a Wing–Gong/Lowe linearizability checker for recorded histories.
        .target(name: "Linearizability", swiftSettings: swiftSettings),
        // Deterministic cluster simulation with fault injection and invariant checks.
        .target(name: "RaftSimulation", dependencies: ["Raft"], swiftSettings: swiftSettings),
        // etcd v3.4 wire messages (etcdserverpb, mvccpb, authpb), gRPC health and the
        // Raft log command, generated from Protos/ by scripts/generate-protos.
        .target(
            name: "EnsembleAPI",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "raft-sim",
            dependencies: [
                "RaftSimulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // The CLI: thin; parses arguments and calls into the modules.
        .executableTarget(
            name: "ensemble",
            dependencies: [
                "EnsembleServer", "EnsembleBench", "EnsembleClient", "EnsembleAPI", "KV",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "RaftTests", dependencies: ["Raft", "RaftSimulation"], swiftSettings: swiftSettings),
        .testTarget(name: "RaftStorageTests", dependencies: ["RaftStorage", "Raft", "Checksum"], swiftSettings: swiftSettings),
        .testTarget(name: "KVTests", dependencies: ["KV", "Raft", "Bolt"], swiftSettings: swiftSettings),
        .testTarget(name: "BoltTests", dependencies: ["Bolt"], swiftSettings: swiftSettings),
        .testTarget(name: "ChecksumTests", dependencies: ["Checksum", "Raft"], swiftSettings: swiftSettings),
        .testTarget(
            name: "RaftTransportTests",
            dependencies: [
                "RaftTransport", "Raft",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LeanHTTP2Tests",
            dependencies: [
                "LeanHTTP2", "Raft",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "LinearizabilityTests", dependencies: ["Linearizability", "Raft"], swiftSettings: swiftSettings),
        .testTarget(
            name: "EnsembleServerTests",
            dependencies: [
                "EnsembleServer", "Raft", "RaftStorage", "RaftTransport", "KV", "Bolt", "EnsembleAPI", "Linearizability", "EnsembleClient",
                "LeanHTTP2",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EnsembleClientTests",
            dependencies: [
                "EnsembleClient", "EnsembleBench", "EnsembleServer", "EnsembleAPI", "Raft", "RaftTransport", "LeanHTTP2",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"), .product(name: "NIOHPACK", package: "swift-nio-http2"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "RaftSimulationTests", dependencies: ["RaftSimulation", "Raft"], swiftSettings: swiftSettings),
        .testTarget(
            name: "EnsembleAPITests",
            dependencies: ["EnsembleAPI", "Raft", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
