import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernTestSupport
@testable import TernWire

@Suite struct EncapsulationTests {
    @Test func ipipOverIPv4CopiesTOSAndDFAndCarriesTheInnerPacketVerbatim() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])])
        let frame = Frames.flow(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 9, destinationPort: 80, payload: [1, 2, 3],
            tos: 0xB9, vlan: 12)
        let (o, out) = sim.run(frame + [0, 0, 0])
        #expect(o == .forwarded)
        let f = out!
        #expect(Array(f[0..<6]) == [2, 0, 0, 0, 0, 0xFE] && Array(f[6..<12]) == [2, 0, 0, 0, 0, 1])
        #expect(f[12] == 0x08 && f[13] == 0x00)
        #expect(f[14] == 0x45 && f[15] == 0xB9 && f[14 + 6] == 0x40 && f[14 + 8] == 64 && f[14 + 9] == 4)
        #expect(Array(f[34...]) == Array(frame[18...]))  // inner IP packet; no VLAN tag, no padding
        #expect(f.withUnsafeBytes { Checksum.fold(Checksum.add($0.baseAddress! + 14, length: 20)) } == 0xFFFF)
    }

    @Test func gueOverIPv6HasAValidUDPChecksumAndTheGUEHeader() {
        var sim = makeSimulator([web([("fc00::2", 100)], encapsulation: .gue)])
        let frame = Frames.flow(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 9, destinationPort: 80)
        let f = sim.run(frame).1!
        #expect(f[12] == 0x86 && f[13] == 0xDD && f[14 + 6] == IPProtocol.udp && f[14 + 7] == 64)
        let udp = 14 + 40
        #expect(f[udp + 2] == 0x17 && f[udp + 3] == 0xC0)  // 6080
        #expect(Array(f[(udp + 8)..<(udp + 12)]) == [0, 4, 0, 0])
        let sum = f.withUnsafeBytes { p -> UInt16 in
            var s = Checksum.sum(of: ip("fc00::10")) + Checksum.sum(of: ip("fc00::2")) + UInt64(f.count - udp) + 17
            s = Checksum.add(p.baseAddress! + udp, length: f.count - udp, to: s)
            return Checksum.fold(s)
        }
        #expect(sum == 0xFFFF)
        #expect(Array(f[(udp + 12)...]) == Array(frame[14...]))
    }

    @Test func echoRequestsToAVIPAddressAreAnswered() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])])
        let c = ip("198.51.100.1")
        let request = Frames.ethernet(
            Frames.ipv4(
                source: c, destination: ip("192.0.2.10"), protocol: IPProtocol.icmp,
                payload: Frames.icmpEcho(source: c, destination: ip("192.0.2.10")), ttl: 3),
            etherType: EtherType.ipv4)
        let (o, reply) = sim.run(request)
        #expect(o == .replied)
        let r = reply!
        #expect(Array(r[26..<30]) == [192, 0, 2, 10] && Array(r[30..<34]) == [198, 51, 100, 1])
        #expect(r[22] == 64 && r[34] == 0)
        #expect(r.withUnsafeBytes { Checksum.fold(Checksum.add($0.baseAddress! + 34, length: r.count - 34)) } == 0xFFFF)
        #expect(Array(r[38...]) == Array(request[38...]))
        // Other ICMP to a VIP is not answered.
        let unreachable = Frames.ethernet(
            Frames.ipv4(
                source: c, destination: ip("192.0.2.10"), protocol: IPProtocol.icmp,
                payload: Frames.icmpEcho(source: c, destination: ip("192.0.2.10"), type: 3)),
            etherType: EtherType.ipv4)
        #expect(sim.run(unreachable).0 == .dropICMPUnsupported)
    }
}
