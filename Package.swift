// swift-tools-version:6.2
// Tern: an L4 load balancer (DPDK kernel bypass, Maglev, IPIP/GUE encapsulation) in Swift.
// Module graph (a module may import only what it declares; the build checks it):
//   TernMetrics, TernWire -> TernBalancing -> TernDataplane (the packet path, the port plan) -> TernDPDK
//   TernWire -> TernXDP (the maps of Tern's XDP program, through libbpf)
//   TernWire, TernBalancing -> TernConfig (TOML, schema, validation, imports; knows no data plane)
//   TernAgent (the control plane) sits on TernConfig, TernDataplane, TernTelemetry and TernPcap (its
//   captures' files); TernPcap stands alone; ternctl and ternd wire them together.
import PackageDescription

/// Every target: Swift 6 language mode (the package default) and warnings are errors; code for
/// corei7 (Nehalem, 2008: SSE4.2, POPCNT), whose `crc32` instruction the flow hash uses (the C
/// side, rte_memcpy.h and CFastPath's header, is built for it too).
let strict: [SwiftSetting] = [.treatAllWarnings(as: .error), .unsafeFlags(["-target-cpu", "corei7", "-Xcc", "-msse4.2"])]

/// DPDK 22.11 from Debian. SwiftPM cannot use its pkg-config file, so the flags are spelled out;
/// -march=corei7 is needed by rte_memcpy.h (SSSE3). Swift targets that see CDPDK get them via -Xcc.
let dpdkCFlags = ["-I/usr/include/dpdk", "-I/usr/include/x86_64-linux-gnu/dpdk", "-include", "rte_config.h", "-march=corei7"]
let dpdkSwift: [SwiftSetting] = strict + [.unsafeFlags(dpdkCFlags.flatMap { ["-Xcc", $0] })]
let dpdkLibraries: [LinkerSetting] = [
    "rte_ethdev", "rte_net", "rte_mbuf", "rte_mempool", "rte_ring", "rte_eal", "rte_kvargs", "rte_telemetry",
    "rte_net_ring", "rte_pdump", "rte_pcapng", "rte_bus_vdev",
].map { .linkedLibrary($0) }

let package = Package(
    name: "Tern",
    products: [
        .executable(name: "ternctl", targets: ["ternctl"]),
        .executable(name: "ternd", targets: ["ternd"]),
        .executable(name: "TernFuzz", targets: ["TernFuzz"]),
        .library(name: "TernDataplane", targets: ["TernDataplane"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", exact: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", exact: "2.37.6"),
    ],
    targets: [
        .target(name: "TernWire", dependencies: ["CFastPath"], swiftSettings: strict),
        // Per-worker counter blocks: written by their worker, read live by the control thread.
        .target(name: "TernMetrics", swiftSettings: strict),
        .target(name: "TernBalancing", dependencies: ["TernWire", "TernMetrics", "CFastPath"], swiftSettings: strict),
        .target(
            name: "TernDataplane", dependencies: ["TernWire", "TernBalancing", "TernMetrics", "CFastPath"], swiftSettings: strict),
        // Config: the TOML parser, the schema, validation, imports. Knows nothing of the data plane.
        .target(name: "TernConfig", dependencies: ["TernWire", "TernBalancing"], swiftSettings: strict),
        // C for DPDK: accessors for DPDK's inline functions, macros and mbuf fields, and glibc gaps.
        .target(
            name: "CDPDK", path: "CShims/CDPDK", cSettings: [.unsafeFlags(dpdkCFlags + ["-Wall", "-Werror"])],
            linkerSettings: dpdkLibraries),
        // Prefetch hints, a SIMD tag compare and huge-page table memory for the packet path (not
        // DPDK). DWARF 4: Debian's valgrind (bench/run.py's callgrind) cannot read clang's DWARF 5.
        .target(
            name: "CFastPath", path: "CShims/CFastPath", cSettings: [.unsafeFlags(["-Wall", "-Werror", "-gdwarf-4", "-msse4.2"])]),
        // libbpf for ternd's side of Tern's XDP program (ebpf/tern_xdp.c): its maps on an AF_XDP port.
        .target(
            name: "CXDP", path: "CShims/CXDP", cSettings: [.unsafeFlags(["-Wall", "-Werror"])],
            linkerSettings: [.linkedLibrary("bpf")]),
        .target(name: "TernXDP", dependencies: ["CXDP", "TernWire"], swiftSettings: strict),
        // libpcap's filter language for packet capture (ternctl capture --filter). DWARF 4: TernBench links it
        // and Debian's valgrind cannot read DWARF 5.
        .target(
            name: "CPcap", path: "CShims/CPcap", cSettings: [.unsafeFlags(["-Wall", "-Werror", "-gdwarf-4"])],
            linkerSettings: [.linkedLibrary("pcap")]),
        .target(
            name: "TernDPDK", dependencies: ["CDPDK", "CPcap", "TernWire", "TernBalancing", "TernDataplane", "TernMetrics"],
            swiftSettings: dpdkSwift),
        // DPDK harnesses for tests and benchmarks (ring-backed ports, a feeder, io/macswap loops): never
        // linked into ternd.
        .target(name: "TernDPDKTestSupport", dependencies: ["CDPDK", "TernDPDK"], swiftSettings: dpdkSwift),
        .target(name: "TernTelemetry", dependencies: ["TernBalancing", "TernDataplane"], swiftSettings: strict),
        // The control plane: desired state (config + overrides), publisher, reloads, the control
        // loop. No DPDK: unit-tested on its own, wired up by ternd.
        .target(
            name: "TernAgent",
            dependencies: [
                "TernWire", "TernBalancing", "TernConfig", "TernTelemetry", "TernDataplane", "TernMetrics", "TernPcap", "CPcap",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict),
        .target(name: "TernPcap", swiftSettings: strict),
        // Frame builders shared by tests, the fuzzer and benchmarks (never linked into ternd).
        .target(name: "TernTestSupport", dependencies: ["TernWire"], swiftSettings: strict),
        .executableTarget(
            name: "ternctl",
            dependencies: [
                "TernWire", "TernBalancing", "TernDataplane", "TernConfig", "TernPcap", "TernTelemetry", "TernAgent",
                "TernMetrics", "TernXDP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "ternd",
            dependencies: [
                "TernWire", "TernBalancing", "TernDataplane", "TernDPDK", "TernConfig", "TernTelemetry", "TernAgent",
                "TernMetrics", "TernXDP",
                "TernPcap", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: dpdkSwift),
        // libFuzzer targets (TERN_FUZZ_TARGET: frame, burst, toml, config). Without -DTERN_LIBFUZZER it is a corpus
        // replayer (runs each file given on the command line once), so a plain `swift build` links it.
        .executableTarget(
            name: "TernFuzz",
            dependencies: ["TernWire", "TernBalancing", "TernDataplane", "TernConfig", "TernTestSupport"],
            swiftSettings: strict + [.unsafeFlags(["-parse-as-library"])]),
        // Benchmarks (bench/RESULTS.md records their figures).
        .executableTarget(
            name: "TernBench",
            dependencies: [
                "TernWire", "TernBalancing", "TernDataplane", "TernDPDK", "TernDPDKTestSupport", "TernTestSupport", "CFastPath",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "bench/TernBench", swiftSettings: dpdkSwift),
        .testTarget(name: "TernWireTests", dependencies: ["TernWire", "TernTestSupport", "CFastPath"], swiftSettings: strict),
        .testTarget(
            name: "TernBalancingTests",
            dependencies: ["TernWire", "TernBalancing", "TernMetrics", "TernTestSupport", "CFastPath"], swiftSettings: strict),
        .testTarget(
            name: "TernDataplaneTests",
            dependencies: ["TernWire", "TernBalancing", "TernDataplane", "TernTestSupport", "TernMetrics", "TernPcap"],
            swiftSettings: strict),
        .testTarget(
            name: "TernConfigTests", dependencies: ["TernWire", "TernBalancing", "TernConfig"],
            exclude: ["toml-test"], swiftSettings: strict),
        .testTarget(
            name: "TernDPDKTests",
            dependencies: [
                "CDPDK", "TernDPDK", "TernDPDKTestSupport", "TernWire", "TernBalancing", "TernDataplane", "TernMetrics",
                "TernTestSupport",
            ],
            swiftSettings: dpdkSwift),
        .testTarget(
            name: "TernXDPTests", dependencies: ["TernXDP", "CXDP", "TernWire", "TernTestSupport"], swiftSettings: strict),
        .testTarget(name: "TernPcapTests", dependencies: ["TernPcap"], swiftSettings: strict),
        .testTarget(
            name: "TernAgentTests",
            dependencies: [
                "TernWire", "TernBalancing", "TernConfig", "TernTelemetry", "TernAgent", "TernDataplane", "TernMetrics",
                "TernTestSupport", "TernPcap", "CPcap", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
    ]
)
