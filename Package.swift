// swift-tools-version:6.2
// Tern: an L4 load balancer (DPDK kernel bypass, Maglev, IPIP/GUE encapsulation) in Swift.
// Module graph (a module may import only what sits to its left in a packet's path):
//   TernWire -> TernBalancing -> TernDataplane ;  TernWire, TernBalancing -> TernControl
//   TernPcap stands alone ; ternctl wires them together.
import PackageDescription

/// Every target: Swift 6 language mode (the package default) and warnings are errors.
let strict: [SwiftSetting] = [.treatAllWarnings(as: .error)]

let package = Package(
    name: "Tern",
    products: [
        .executable(name: "ternctl", targets: ["ternctl"]),
        .executable(name: "TernFuzz", targets: ["TernFuzz"]),
        .library(name: "TernDataplane", targets: ["TernDataplane"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", exact: "0.6.0"),
    ],
    targets: [
        .target(name: "TernWire", swiftSettings: strict),
        .target(name: "TernBalancing", dependencies: ["TernWire"], swiftSettings: strict),
        .target(name: "TernDataplane", dependencies: ["TernWire", "TernBalancing"], swiftSettings: strict),
        .target(
            name: "TernControl",
            dependencies: ["TernWire", "TernBalancing", .product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: strict),
        .target(name: "TernTelemetry", dependencies: ["TernBalancing", "TernDataplane"], swiftSettings: strict),
        .target(name: "TernPcap", swiftSettings: strict),
        // Frame builders shared by tests, the fuzzer and benchmarks (never linked into ternd).
        .target(name: "TernTestSupport", dependencies: ["TernWire"], swiftSettings: strict),
        .executableTarget(
            name: "ternctl",
            dependencies: [
                "TernWire", "TernBalancing", "TernDataplane", "TernControl", "TernPcap", "TernTelemetry",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        // libFuzzer target for the parser and the pipeline. Without -DTERN_LIBFUZZER it is a corpus
        // replayer (runs each file given on the command line once), so a plain `swift build` links it.
        .executableTarget(
            name: "TernFuzz",
            dependencies: ["TernWire", "TernBalancing", "TernDataplane", "TernTestSupport"],
            swiftSettings: strict + [.unsafeFlags(["-parse-as-library"])]),
        // Benchmarks (bench/RESULTS.md records their figures).
        .executableTarget(
            name: "TernBench", dependencies: ["TernWire", "TernBalancing", "TernDataplane", "TernTestSupport"],
            path: "bench/TernBench", swiftSettings: strict),
        .testTarget(name: "TernWireTests", dependencies: ["TernWire", "TernTestSupport"], swiftSettings: strict),
        .testTarget(name: "TernBalancingTests", dependencies: ["TernWire", "TernBalancing"], swiftSettings: strict),
        .testTarget(
            name: "TernDataplaneTests", dependencies: ["TernWire", "TernBalancing", "TernDataplane", "TernTestSupport"],
            swiftSettings: strict),
        .testTarget(
            name: "TernControlTests", dependencies: ["TernWire", "TernBalancing", "TernControl"],
            swiftSettings: strict),
        .testTarget(name: "TernPcapTests", dependencies: ["TernPcap"], swiftSettings: strict),
    ]
)
