// The pipeline's verdicts as a table: each case is a description, the frames it sends, the outcome
// of each, and what the frames that leave must be (checked by reading their headers, not by the
// code under test). The whole table runs twice through one worker each: a frame at a time, and
// every case's frames interleaved in bursts of several flows; both must meet every expectation.

import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernMetrics
@testable import TernTestSupport
@testable import TernWire

struct PipelineCase: Sendable, CustomStringConvertible {
    let description: String
    let frames: [[UInt8]]
    let outcomes: [Outcome]
    /// What each transmitted frame must be (nil: only the outcome is checked).
    let sent: (@Sendable ([UInt8]) -> Bool)?

    init(_ description: String, _ frames: [[UInt8]], _ outcomes: [Outcome], sent: (@Sendable ([UInt8]) -> Bool)? = nil) {
        self.description = description
        self.frames = frames
        self.outcomes = outcomes
        self.sent = sent
    }
}

/// Readers for what leaves, by offset (untagged Ethernet).
enum Sent {
    static func etherType(_ f: [UInt8]) -> UInt16 { UInt16(f[12]) << 8 | UInt16(f[13]) }
    /// An IPv4 outer header toward one of `backends` carrying `proto`.
    static func ipv4(to backends: [String], proto: UInt8) -> @Sendable ([UInt8]) -> Bool {
        let wanted = backends.map { IPAddress($0)! }
        return { f in
            etherType(f) == EtherType.ipv4 && f[14 + 9] == proto && wanted.contains(outerDestination(f))
                && Array(f[0..<6]) == [0x02, 0, 0, 0, 0, 0xFE]
        }
    }
    /// An IPv6 outer header (next header `proto`) toward `backend`.
    static func ipv6(to backend: String, proto: UInt8) -> @Sendable ([UInt8]) -> Bool {
        let wanted = IPAddress(backend)!
        return { f in
            etherType(f) == EtherType.ipv6 && f[14 + 6] == proto
                && f.withUnsafeBytes { IPAddress(loadingFrom: $0.baseAddress!, offset: 14 + 24, isV6: true) } == wanted
        }
    }
    /// An ICMPv4 message of `type` back to the client.
    static func icmp(type: UInt8) -> @Sendable ([UInt8]) -> Bool {
        { f in etherType(f) == EtherType.ipv4 && f[14 + 9] == IPProtocol.icmp && f[14 + 20] == type }
    }
}

@Suite struct PipelineCaseTests {
    static let vip = ip("192.0.2.10")

    static func simulator() -> Simulator {
        makeSimulator([
            web([("10.1.0.1", 100), ("10.1.0.2", 100)]),
            ServiceSpec(
                address: vip, port: 53, ipProtocol: IPProtocol.udp, encapsulation: .gue, guePort: 6080,
                backends: [(ip("10.1.0.3"), 100)]),
            ServiceSpec(
                address: vip, port: 0, ipProtocol: IPProtocol.udp, encapsulation: .gue, guePort: 6080,
                backends: [(ip("10.1.0.4"), 100)]),
            ServiceSpec(
                address: ip("192.0.2.11"), port: 443, ipProtocol: IPProtocol.tcp, encapsulation: .ipip,
                backends: [(ip("fc00::1"), 100)]),
            ServiceSpec(
                address: ip("192.0.2.12"), port: 80, ipProtocol: IPProtocol.tcp, encapsulation: .ipip,
                backends: [(ip("10.1.0.5"), 0)]),
        ])
    }

    static func tcp(
        _ client: String, _ sport: UInt16, to vip: IPAddress = vip, port: UInt16 = 80, flags: UInt8 = TCPFlag.ack,
        payload: Int = 0
    )
        -> [UInt8]
    {
        Frames.flow(
            source: ip(client), destination: vip, sourcePort: sport, destinationPort: port,
            payload: [UInt8](repeating: 0x5A, count: payload), tcpFlags: flags)
    }

    static let cases: [PipelineCase] = {
        let web = Sent.ipv4(to: ["10.1.0.1", "10.1.0.2"], proto: 4)
        return [
            PipelineCase(
                "a connection (SYN, data, FIN) goes to one web backend in IPIP",
                [
                    tcp("198.51.100.1", 4000, flags: TCPFlag.syn), tcp("198.51.100.1", 4000, payload: 100),
                    tcp("198.51.100.1", 4000, flags: TCPFlag.fin | TCPFlag.ack),
                ],
                [.forwarded, .forwarded, .forwarded], sent: web),
            PipelineCase(
                "an established flow this worker never saw is placed by Maglev",
                [tcp("198.51.100.2", 5000, payload: 10), tcp("198.51.100.2", 5000, payload: 20)], [.forwarded, .forwarded],
                sent: web),
            PipelineCase(
                "DNS over UDP goes to its VIP's backend in GUE",
                [
                    Frames.flow(
                        source: ip("198.51.100.3"), destination: vip, sourcePort: 999, destinationPort: 53, udp: true,
                        payload: [1, 2])
                ],
                [.forwarded], sent: Sent.ipv4(to: ["10.1.0.3"], proto: IPProtocol.udp)),
            PipelineCase(
                "other UDP ports take the port-0 VIP",
                [Frames.flow(source: ip("198.51.100.3"), destination: vip, sourcePort: 999, destinationPort: 5353, udp: true)],
                [.forwarded], sent: Sent.ipv4(to: ["10.1.0.4"], proto: IPProtocol.udp)),
            PipelineCase(
                "UDP to a GUE VIP's own gue_port is never placed",
                [Frames.flow(source: ip("198.51.100.3"), destination: vip, sourcePort: 999, destinationPort: 6080, udp: true)],
                [.dropGUEInGUE]),
            PipelineCase(
                "an IPv6 backend gets a 4in6 packet",
                [tcp("198.51.100.4", 6000, to: ip("192.0.2.11"), port: 443, flags: TCPFlag.syn)], [.forwarded],
                sent: Sent.ipv6(to: "fc00::1", proto: 4)),
            PipelineCase(
                "a VIP whose only backend is drained takes no new flow",
                [tcp("198.51.100.5", 7000, to: ip("192.0.2.12"), flags: TCPFlag.syn)], [.dropNoBackend]),
            PipelineCase("a port no VIP serves", [tcp("198.51.100.6", 8000, port: 81)], [.dropNoService]),
            PipelineCase(
                "traffic for no VIP address is the host's", [tcp("198.51.100.6", 8000, to: ip("203.0.113.9"))], [.host]),
            PipelineCase("a frame cut inside its IP header", [Array(tcp("198.51.100.7", 1).prefix(30))], [.dropMalformed]),
            PipelineCase(
                "a ping to the VIP is answered", [echoRequest(from: ip("198.51.100.8"), to: vip)], [.replied],
                sent: Sent.icmp(type: 0)),
            PipelineCase(
                "a ping from a VIP address is refused", [echoRequest(from: ip("192.0.2.11"), to: vip)], [.dropBadSource]),
            PipelineCase(
                "ICMP other than echo and errors is not served",
                [
                    Frames.ethernet(
                        Frames.ipv4(
                            source: ip("198.51.100.9"), destination: vip, protocol: IPProtocol.icmp,
                            payload: Frames.icmpEcho(source: ip("198.51.100.9"), destination: vip, type: 13)),
                        etherType: EtherType.ipv4)
                ],
                [.dropICMPUnsupported]),
            PipelineCase(
                "a packet too big for the tunnel with DF is answered with fragmentation needed",
                [tcp("198.51.100.10", 9000, payload: 1460)], [.repliedTooBig], sent: Sent.icmp(type: 3)),
            PipelineCase(
                "a fragmented datagram in order follows its first fragment",
                udpFragments(client: "198.51.100.11", port: 53, id: 9), [.forwarded, .forwarded, .forwarded],
                sent: Sent.ipv4(to: ["10.1.0.3"], proto: IPProtocol.udp)),
        ]
    }()

    /// Runs the table's frames in `order` (case, frame) through one worker in bursts of the sizes
    /// `burst` gives; returns each case's outcomes and transmitted frames.
    static func run(order: [(Int, Int)], burst: (Int) -> Int) -> [[(Outcome, [UInt8]?)]] {
        var sim = simulator()
        var results = cases.map { c in [(Outcome, [UInt8]?)](repeating: (.held, nil), count: c.frames.count) }
        var i = 0
        while i < order.count {
            let n = min(order.count - i, burst(i))
            let slice = order[i..<(i + n)]
            for ((c, f), r) in zip(slice, sim.runBurst(slice.map { cases[$0.0].frames[$0.1] })) { results[c][f] = r }
            i += n
        }
        return results
    }

    static func check(_ results: [[(Outcome, [UInt8]?)]], _ how: String) {
        for (c, r) in zip(cases, results) {
            #expect(r.map(\.0) == c.outcomes, "\(how): \(c)")
            for (outcome, frame) in r where outcome.transmits {
                #expect(frame.map { c.sent?($0) ?? true } == true, "\(how): \(c): what left")
            }
        }
    }

    @Test func everyCaseFrameByFrame() {
        let order = PipelineCaseTests.cases.indices.flatMap { c in PipelineCaseTests.cases[c].frames.indices.map { (c, $0) } }
        PipelineCaseTests.check(PipelineCaseTests.run(order: order, burst: { _ in 1 }), "one at a time")
    }

    /// Round robin over the cases (each case's frames stay in order), in bursts of 1 to 16 frames.
    @Test func everyCaseInBurstsOfMixedFlows() {
        var order: [(Int, Int)] = []
        let longest = PipelineCaseTests.cases.map(\.frames.count).max()!
        for f in 0..<longest {
            for (c, k) in PipelineCaseTests.cases.enumerated() where f < k.frames.count { order.append((c, f)) }
        }
        var rng = SplitMix(seed: 23)
        PipelineCaseTests.check(
            PipelineCaseTests.run(order: order, burst: { _ in Int.random(in: 1...16, using: &rng) }), "in bursts")
    }
}
