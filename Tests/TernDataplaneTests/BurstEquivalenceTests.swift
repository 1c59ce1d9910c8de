// A burst gives what the same frames give one at a time. Every frame enters the pipeline through
// `processBurst`; in a burst of many, stage 1 runs over all of them before stage 2 finishes any, and
// established flows are settled at the way the second pass hinted. These tests replay a table of
// mixed traffic (new and established flows, several packets of one flow in one burst, SYN/FIN/RST,
// UDP, IPv6, GUE, echo, fragments in order, too big, unserved, malformed, not for a VIP) once as
// bursts of one and once as bursts of seeded random sizes, and require the same outcome and bytes
// for every frame, and the same counters (per outcome, and per backend).

import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernMetrics
@testable import TernTestSupport
@testable import TernWire

@Suite struct BurstEquivalenceTests {
    static func simulator() -> Simulator {
        let two = [("10.1.0.1", 100), ("10.1.0.2", 100)]
        return makeSimulator([
            web([("10.1.0.1", 100), ("10.1.0.2", 100), ("fc00::3", 100)]),
            ServiceSpec(
                address: ip("192.0.2.10"), port: 53, ipProtocol: IPProtocol.udp, encapsulation: .gue, guePort: 6080,
                backends: two.map { (ip($0.0), $0.1) }),
            ServiceSpec(
                address: ip("2001:db8::10"), port: 443, ipProtocol: IPProtocol.tcp, encapsulation: .ipip,
                backends: [(ip("fc00::1"), 100), (ip("10.1.0.9"), 100)]),
        ])
    }

    /// The traffic, in arrival order: interleaved connections (SYN, data, FIN; some reset), UDP and
    /// IPv6 flows, echo requests, a fragmented datagram in order, frames too big for the MTU and
    /// frames that end before stage 2.
    static func traffic() -> [[UInt8]] {
        var frames: [[UInt8]] = []
        let client6 = ip("2001:db8:1::7")
        for round in 0..<6 {
            for c in 0..<24 {
                let source = IPAddress(v4: 0xC633_6400 &+ UInt32(c))
                let port = UInt16(30000 + c)
                let flags: UInt8 =
                    switch round {
                    case 0: TCPFlag.syn
                    case 5: c % 3 == 0 ? TCPFlag.rst : TCPFlag.fin | TCPFlag.ack
                    default: TCPFlag.ack
                    }
                frames.append(
                    Frames.flow(
                        source: source, destination: ip("192.0.2.10"), sourcePort: port, destinationPort: 80,
                        payload: [UInt8](repeating: UInt8(round), count: c * 5), tcpFlags: flags))
                if c % 4 == 0 {
                    frames.append(
                        Frames.flow(
                            source: source, destination: ip("192.0.2.10"), sourcePort: port, destinationPort: 53, udp: true,
                            payload: [1, 2]))
                }
                if c % 5 == 0 {
                    frames.append(
                        Frames.flow(
                            source: client6, destination: ip("2001:db8::10"), sourcePort: port, destinationPort: 443,
                            tcpFlags: round == 0 ? TCPFlag.syn : TCPFlag.ack))
                }
            }
            frames.append(echoRequest(from: ip("198.51.100.1"), to: ip("192.0.2.10")))
            frames.append(
                Frames.flow(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 1, destinationPort: 81))
            frames.append(
                Frames.flow(source: ip("198.51.100.1"), destination: ip("203.0.113.1"), sourcePort: 1, destinationPort: 80))
            frames.append(
                Frames.flow(
                    source: ip("198.51.100.2"), destination: ip("192.0.2.10"), sourcePort: 7, destinationPort: 80,
                    payload: [UInt8](repeating: 0, count: 1480)))
            frames.append(Array(clientFlow(round).prefix(30)))
        }
        frames += udpFragments(client: "198.51.100.9", port: 5000, id: 77)
        frames += echoFragments(client: "198.51.100.10", id: 78)
        return frames
    }

    static func run(_ frames: [[UInt8]], burstSizes: inout SplitMix, largest: Int) -> (
        [(Outcome, [UInt8]?)], OutcomeCounters, (packets: [UInt64], newFlows: [UInt64], bytes: [UInt64])
    ) {
        var sim = simulator()
        var results: [(Outcome, [UInt8]?)] = []
        var i = 0
        while i < frames.count {
            let n = min(frames.count - i, Int.random(in: 1...largest, using: &burstSizes))
            results += sim.runBurst(Array(frames[i..<(i + n)]))
            i += n
        }
        return (results, sim.worker.counters, sim.snapshot.backendTotals())
    }

    @Test(arguments: [2, 8, 32, Worker.maxBurst])
    func burstsOfMixedFlowsGiveWhatSingleFramesGive(largest: Int) {
        let frames = BurstEquivalenceTests.traffic()
        var rng = SplitMix(seed: UInt64(largest))
        let (single, singleCounters, singleTotals) = BurstEquivalenceTests.run(frames, burstSizes: &rng, largest: 1)
        let (burst, burstCounters, burstTotals) = BurstEquivalenceTests.run(frames, burstSizes: &rng, largest: largest)
        // Per backend too: packets forwarded and flows placed land in this worker's row.
        #expect(singleTotals.packets == burstTotals.packets && singleTotals.newFlows == burstTotals.newFlows)
        #expect(singleTotals.bytes == burstTotals.bytes)
        #expect(singleTotals.newFlows.reduce(0, +) > 0)
        // Bytes are the clients' IP lengths (before encapsulation) of the frames forwarded.
        var ipBytes: UInt64 = 0
        for k in frames.indices where single[k].0 == .forwarded || single[k].0 == .forwardedInFragments {
            let f = frames[k]
            ipBytes += f[12] == 0x86 ? 40 + UInt64(f[18]) << 8 + UInt64(f[19]) : UInt64(f[16]) << 8 + UInt64(f[17])
        }
        #expect(singleTotals.bytes.reduce(0, +) == ipBytes && ipBytes > 0)
        var differing: [Int] = []
        for k in frames.indices where single[k].0 != burst[k].0 || single[k].1 != burst[k].1 { differing.append(k) }
        #expect(
            differing.isEmpty,
            "\(differing.count) frames differ, first: \(differing.first.map { "\($0): \(single[$0].0) vs \(burst[$0].0)" } ?? "")"
        )
        for o in Outcome.allCases { #expect(singleCounters[o] == burstCounters[o], "\(o)") }
        // The table means something: it reaches forwarding, replies and drops alike.
        // 144 TCP, 36 UDP (GUE), 30 IPv6 and 6 fragment frames forwarded; 6 of each other kind.
        #expect(frames.count == 246 && singleCounters[.forwarded] == 216 && singleCounters[.replied] == 6)
        #expect(singleCounters[.repliedTooBig] == 6 && singleCounters[.dropNoService] == 6)
        #expect(singleCounters[.host] == 6 && singleCounters[.dropMalformed] == 6)
    }
}
