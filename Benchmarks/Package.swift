// swift-tools-version: 6.1
// Benchmarks live in their own package so that `swift test` at the root never
// builds the benchmark harness. Run with `swift package benchmark` from here.
import PackageDescription

let package = Package(
    name: "EnsembleBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Ensemble", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "RaftBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Raft", package: "Ensemble"),
                .product(name: "RaftStorage", package: "Ensemble"),
            ],
            path: "Benchmarks/RaftBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
