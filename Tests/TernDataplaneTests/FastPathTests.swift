import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernTestSupport
@testable import TernWire

/// Stage 1 has a fast path (`classifyFast`) beside the general parser (`classifyGeneral`), which
/// alone gives every verdict. These tests hold the fast path to the general one: whatever frame
/// it accepts, the general parser also sends to stage 2, with the same record.
@Suite struct FastPathTests {
    static let vip4 = ip("192.0.2.10")
    static let vip6 = ip("2001:db8::10")

    static func simulator() -> Simulator {
        let backends = [(ip("10.1.0.1"), 100), (ip("10.1.0.2"), 100)]
        func service(_ address: IPAddress, _ port: UInt16, _ proto: UInt8) -> ServiceSpec {
            ServiceSpec(
                address: address, port: port, ipProtocol: proto, encapsulation: .ipip, backends: backends.map { ($0.0, $0.1) })
        }
        return makeSimulator([
            service(vip4, 80, IPProtocol.tcp), service(vip4, 53, IPProtocol.udp), service(ip("192.0.2.11"), 0, IPProtocol.tcp),
            service(vip6, 80, IPProtocol.tcp), service(vip6, 5353, IPProtocol.udp),
        ])
    }

    /// Frames of every kind the two paths meet: the fast path's own (TCP and UDP to a VIP over
    /// IPv4 and IPv6, padded or not, with ToS, DF or not) and what it must leave to the general
    /// parser (VLAN tags, IPv4 options, IPv6 extension headers, fragments, ICMP, other addresses).
    static func seeds() -> (fast: [[UInt8]], other: [[UInt8]]) {
        let client4 = ip("198.51.100.7")
        let client6 = ip("2001:db8:1::7")
        var fast: [[UInt8]] = []
        for (client, vip) in [(client4, vip4), (client6, vip6)] {
            for (port, udp) in [(UInt16(80), false), (vip.isV6 ? 5353 : 53, true)] {
                for flags in [TCPFlag.ack, TCPFlag.syn, TCPFlag.fin | TCPFlag.ack] {
                    fast.append(
                        Frames.flow(
                            source: client, destination: vip, sourcePort: 40000 + UInt16(flags), destinationPort: port, udp: udp,
                            payload: [UInt8](repeating: 7, count: Int(flags) * 3), tos: 0xB8, tcpFlags: flags))
                }
            }
        }
        fast.append(Frames.flow(source: client4, destination: ip("192.0.2.11"), sourcePort: 1234, destinationPort: 8080))
        fast.append(Frames.flow(source: client4, destination: vip4, sourcePort: 1234, destinationPort: 80) + [0, 0, 0, 0, 0, 0])
        let noDF = Frames.ethernet(
            Frames.ipv4(
                source: client4, destination: vip4, protocol: IPProtocol.udp,
                payload: Frames.udp(source: client4, destination: vip4, sourcePort: 9, destinationPort: 53, payload: [1, 2, 3]),
                dontFragment: false),
            etherType: EtherType.ipv4)
        fast.append(noDF)
        let tcp4 = Frames.tcp(source: client4, destination: vip4, sourcePort: 5, destinationPort: 80, flags: TCPFlag.ack)
        let tcp6 = Frames.tcp(source: client6, destination: vip6, sourcePort: 5, destinationPort: 80, flags: TCPFlag.ack)
        let other: [[UInt8]] = [
            Frames.flow(source: client4, destination: vip4, sourcePort: 1, destinationPort: 80, vlan: 7),
            Frames.ethernet(
                Frames.ipv4(source: client4, destination: vip4, protocol: IPProtocol.tcp, payload: tcp4, options: [1, 1, 1, 0]),
                etherType: EtherType.ipv4),
            Frames.ethernet(
                Frames.ipv6(
                    source: client6, destination: vip6, nextHeader: IPProtocol.tcp, payload: tcp6,
                    extensions: [(IPProtocol.destinationOptions, [1, 4, 0, 0, 0, 0])]),
                etherType: EtherType.ipv6),
            Frames.ethernet(
                Frames.ipv4(source: client4, destination: vip4, protocol: IPProtocol.tcp, payload: tcp4, moreFragments: true),
                etherType: EtherType.ipv4),
            Frames.ethernet(
                Frames.ipv4(
                    source: client4, destination: vip4, protocol: IPProtocol.icmp,
                    payload: Frames.icmpEcho(source: client4, destination: vip4)), etherType: EtherType.ipv4),
            Frames.flow(source: client4, destination: ip("203.0.113.1"), sourcePort: 1, destinationPort: 80),
            Frames.flow(source: client4, destination: vip4, sourcePort: 1, destinationPort: 81),
        ]
        return (fast, other)
    }

    /// Runs both paths on a copy of `frame` each; nil when the fast path declines it, else whether
    /// the general path agreed.
    static func compare(_ frame: [UInt8], _ sim: borrowing Simulator) -> Bool? {
        let headroom = 128
        let buffers = UnsafeMutableRawPointer.allocate(byteCount: 2 * (frame.count + headroom), alignment: 64)
        let records = UnsafeMutablePointer<Classified>.allocate(capacity: 2)
        defer {
            buffers.deallocate()
            records.deallocate()
        }
        frame.withUnsafeBytes { (buffers + headroom).copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
        guard
            Worker.classifyFast(UnsafeRawPointer(buffers + headroom), length: frame.count, into: records, snapshot: sim.snapshot)
        else { return nil }
        let data = buffers + (frame.count + 2 * headroom)
        frame.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
        var packet = Packet(data: data, length: frame.count, headroom: headroom)
        guard sim.worker.classifyGeneral(&packet, into: records + 1, snapshot: sim.snapshot) == nil else { return false }
        let a = records[0]
        let b = records[1]
        return a.tuple == b.tuple && a.hash == b.hash && a.vip == b.vip && a.l3Offset == b.l3Offset && a.ipLength == b.ipLength
            && a.trafficClass == b.trafficClass && a.dontFragment == b.dontFragment && a.isICMPError == b.isICMPError
            && a.tcpFlags == b.tcpFlags
    }

    @Test func theFastPathTakesPlainTCPAndUDPToAVIPAndLeavesTheRest() {
        let sim = FastPathTests.simulator()
        let (fast, other) = FastPathTests.seeds()
        for frame in fast { #expect(FastPathTests.compare(frame, sim) == true) }
        for frame in other { #expect(FastPathTests.compare(frame, sim) == nil) }
    }

    /// Seeds with bytes of their headers changed at random, or cut short: lying lengths, other
    /// versions, protocols, flags and addresses. Whatever the fast path still accepts, the
    /// general parser must classify the same way.
    @Test func everyDamagedFrameTheFastPathAcceptsIsClassifiedAlikeByTheGeneralParser() {
        let sim = FastPathTests.simulator()
        let (fast, other) = FastPathTests.seeds()
        var rng = SplitMix(seed: 0x7E2A)
        var accepted = 0
        var declined = 0
        var disagreements: [[UInt8]] = []
        for seed in fast + other {
            for _ in 0..<400 {
                var frame = seed
                if Int.random(in: 0..<4, using: &rng) == 0 {
                    frame.removeLast(Int.random(in: 1...min(frame.count, 40), using: &rng))
                } else {
                    for _ in 0..<Int.random(in: 1...3, using: &rng) {
                        let i = Int.random(in: 12..<min(frame.count, 80), using: &rng)
                        frame[i] =
                            Bool.random(using: &rng)
                            ? UInt8.random(in: 0...255, using: &rng) : frame[i] ^ (1 << UInt8.random(in: 0..<8, using: &rng))
                    }
                }
                switch FastPathTests.compare(frame, sim) {
                case nil: declined += 1
                case true?: accepted += 1
                case false?: disagreements.append(frame)
                }
            }
        }
        #expect(disagreements.count == 0, "the first of \(disagreements.count) frames: \(disagreements.first ?? [])")
        // Both outcomes happen often enough for the comparison to mean something.
        #expect(accepted > 1000 && declined > 1000, "accepted \(accepted), declined \(declined)")
    }
}
