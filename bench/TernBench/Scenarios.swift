// Benchmark scenarios, generated deterministically in memory: a forwarding config and a sequence of
// frames written into fixed-size slots (with headroom) of one arena.

import CFastPath
import TernBalancing
import TernTestSupport
import TernWire

struct Scenario {
    var name: String
    var spec: SnapshotSpec
    /// Distinct flows; packets cycle over them (so each flow sees one packet per pass).
    var flows: Int
    /// Every pass uses fresh flows (the source address changes between passes).
    var newFlowsEachPass: Bool
    /// Frame template for flow i (before any per-pass change); `Frames` builds it.
    var frame: (Int) -> [UInt8]
    /// Bytes per arena slot (headroom + largest frame, rounded to cache lines).
    var slotSize: Int
    var flowTableEntries: Int

    static let headroom = 128
    /// The MTU toward the backends: jumbo, so that imix's 1518-byte frames fit with their outer
    /// headers and are forwarded like the rest (with 1500 they would all be answered "too big").
    static let backendMTU = 9000

    static func client(_ i: Int) -> IPAddress { IPAddress(v4: 0x6440_0000 &+ UInt32(i)) }  // 100.64.0.0/10
    static func client6(_ i: Int) -> IPAddress { IPAddress(high: 0x2001_0db8_0001_0000, low: UInt64(i), isV6: true) }
    static func port(_ i: Int) -> UInt16 { UInt16(truncatingIfNeeded: 1024 &+ (i &* 7919) % 60000) }

    static func backends(_ n: Int, base: UInt32 = 0x0A01_0000) -> [(address: IPAddress, weight: Int)] {
        (0..<n).map { (IPAddress(v4: base &+ UInt32($0)), 100) }
    }

    static func spec(_ services: [ServiceSpec]) -> SnapshotSpec {
        SnapshotSpec(
            services: services, tableSize: 65537, tunnelSourceV4: IPAddress("10.0.0.10"), tunnelSourceV6: IPAddress("fc00::10"))
    }

    static let vip4 = IPAddress("192.0.2.10")!
    static let vip6 = IPAddress("2001:db8::10")!

    /// The named scenario at full size or, when `quick`, a small variant for smoke runs.
    static func all(quick: Bool) -> [Scenario] {
        let big = quick ? 10_000 : 1_000_000
        let medium = quick ? 10_000 : 100_000
        let web = spec([
            ServiceSpec(address: vip4, port: 80, ipProtocol: IPProtocol.tcp, encapsulation: .ipip, backends: backends(100))
        ])
        let tcp: (Int) -> [UInt8] = { i in
            Frames.flow(source: client(i), destination: vip4, sourcePort: port(i), destinationPort: 80)
        }
        let syn: (Int) -> [UInt8] = { i in
            Frames.flow(source: client(i), destination: vip4, sourcePort: port(i), destinationPort: 80, tcpFlags: TCPFlag.syn)
        }
        var list: [Scenario] = [
            Scenario(
                name: "tcp-established", spec: web, flows: big, newFlowsEachPass: false, frame: tcp, slotSize: 256,
                flowTableEntries: 2 * big),
            Scenario(
                name: "tcp-syn", spec: web, flows: big, newFlowsEachPass: true, frame: syn, slotSize: 256, flowTableEntries: big),
            Scenario(
                name: "udp",
                spec: spec([
                    ServiceSpec(address: vip4, port: 0, ipProtocol: IPProtocol.udp, encapsulation: .ipip, backends: backends(100))
                ]),
                flows: medium, newFlowsEachPass: false,
                frame: { i in
                    Frames.flow(
                        source: client(i), destination: vip4, sourcePort: port(i), destinationPort: 53, udp: true,
                        payload: [1, 2, 3, 4])
                },
                slotSize: 256, flowTableEntries: 2 * medium),
            Scenario(
                name: "ipv6",
                spec: spec([
                    ServiceSpec(
                        address: vip6, port: 443, ipProtocol: IPProtocol.tcp, encapsulation: .ipip,
                        backends: (0..<100).map { (IPAddress(high: 0xfc00_0001_0000_0000, low: UInt64($0 + 1), isV6: true), 100) }
                    )
                ]),
                flows: medium, newFlowsEachPass: false,
                frame: { i in Frames.flow(source: client6(i), destination: vip6, sourcePort: port(i), destinationPort: 443) },
                slotSize: 256, flowTableEntries: 2 * medium),
            Scenario(
                name: "gue",
                spec: spec([
                    ServiceSpec(
                        address: vip4, port: 80, ipProtocol: IPProtocol.tcp, encapsulation: .gue, guePort: 6080,
                        backends: backends(100))
                ]),
                flows: medium, newFlowsEachPass: false, frame: tcp, slotSize: 256, flowTableEntries: 2 * medium),
            Scenario(
                name: "multi-vip",
                spec: spec(
                    (0..<1000).map { v in
                        ServiceSpec(
                            address: IPAddress(v4: 0xC612_0000 &+ UInt32(v)), port: 80, ipProtocol: IPProtocol.tcp,
                            encapsulation: .ipip,
                            backends: backends(10, base: 0x0A00_0000 &+ UInt32(v) << 8))
                    }),
                flows: medium, newFlowsEachPass: false,
                frame: { i in
                    Frames.flow(
                        source: client(i), destination: IPAddress(v4: 0xC612_0000 &+ UInt32(i % 1000)), sourcePort: port(i),
                        destinationPort: 80)
                },
                slotSize: 256, flowTableEntries: 2 * medium),
            Scenario(
                name: "imix", spec: web, flows: medium, newFlowsEachPass: false,
                frame: { i in
                    // Simple IMIX 7:4:1 by count: 64, 594 and 1518-byte frames.
                    let frameSize = [64, 64, 64, 64, 64, 64, 64, 594, 594, 594, 594, 1518][i % 12]
                    return Frames.flow(
                        source: client(i), destination: vip4, sourcePort: port(i), destinationPort: 80,
                        payload: [UInt8](repeating: 0x5A, count: max(0, frameSize - 4 - 54)))
                },
                slotSize: 1664, flowTableEntries: 2 * medium),
        ]
        if quick {
            list = list.map {
                var s = $0
                s.name += "-small"
                return s
            }
        }
        return list
    }
}

/// The frames of a scenario in one arena, each in its own slot, plus what is needed to put a frame
/// back after the pipeline rewrote it (only bytes in front of the IP header change).
final class FrameArena {
    let base: UnsafeMutableRawPointer
    let count: Int
    let slotSize: Int
    let lengths: UnsafeMutablePointer<Int>
    /// The original 14 (or 18) bytes in front of the IP header; the same for every frame of a scenario.
    let ethernet: [UInt8]

    init(_ s: Scenario) {
        count = s.flows
        slotSize = s.slotSize
        // Huge pages, as DPDK's mbufs have in production (hugetlbfs): with 4 KiB pages a million
        // frames would add a TLB miss per packet that no deployment sees.
        base = tern_huge_alloc(count * slotSize)!
        lengths = .allocate(capacity: count)
        ethernet = Array(s.frame(0)[0..<14])
        for i in 0..<count {
            let f = s.frame(i)
            precondition(f.count + Scenario.headroom <= slotSize)
            f.withUnsafeBytes { (base + i * slotSize + Scenario.headroom).copyMemory(from: $0.baseAddress!, byteCount: f.count) }
            lengths[i] = f.count
        }
    }

    deinit {
        tern_huge_free(base, count * slotSize)
        lengths.deallocate()
    }

    @inline(__always) func frame(_ i: Int) -> UnsafeMutableRawPointer { base + i * slotSize + Scenario.headroom }

    /// Undoes encapsulation: the inner IP packet is untouched, so rewriting the Ethernet header is enough.
    @inline(__always) func restore(_ i: Int) {
        ethernet.withUnsafeBytes { frame(i).copyMemory(from: $0.baseAddress!, byteCount: 14) }
    }

    /// Gives every frame a new source (tcp-syn): flips bits in the first source-address byte.
    func renewSources(pass: Int) {
        for i in 0..<count {
            let p = frame(i)
            let v6 = p.load(fromByteOffset: 12, as: UInt8.self) == 0x86
            let offset = v6 ? 14 + 8 + 4 : 14 + 12 + 1
            p.storeBytes(of: UInt8(truncatingIfNeeded: pass), toByteOffset: offset, as: UInt8.self)
        }
    }
}
