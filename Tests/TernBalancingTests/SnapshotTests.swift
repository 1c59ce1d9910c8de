import Testing

@testable import TernBalancing
@testable import TernWire

func service(_ address: String, _ port: UInt16, _ proto: UInt8 = IPProtocol.tcp, backends: [String] = ["10.1.0.1"])
    -> ServiceSpec
{
    ServiceSpec(
        address: IPAddress(address)!, port: port, ipProtocol: proto, encapsulation: .ipip,
        backends: backends.map { (IPAddress($0)!, 100) })
}

/// The VIP `s` picks for a destination (a plain function: `#expect` cannot capture a ~Copyable snapshot).
func lookup(_ s: borrowing ForwardingSnapshot, _ address: String, _ port: UInt16, _ proto: UInt8 = IPProtocol.tcp) -> Int {
    s.findVIP(address: IPAddress(address)!, port: port, ipProtocol: proto)
}

func isVIPAddress(_ s: borrowing ForwardingSnapshot, _ address: IPAddress) -> Bool { s.isVIPAddress(address) }

@Suite struct SnapshotTests {
    @Test func findsExactVIPsBeforeAnyPortVIPs() {
        let spec = SnapshotSpec(
            services: [
                service("192.0.2.10", 80), service("192.0.2.10", 0), service("192.0.2.10", 0, IPProtocol.udp),
                service("2001:db8::1", 443), service("192.0.2.11", 53, IPProtocol.udp),
            ],
            tableSize: 7, tunnelSourceV4: IPAddress("10.0.0.1"), tunnelSourceV6: nil)
        let s = ForwardingSnapshot(spec, generation: 1)
        #expect(isVIPAddress(s, IPAddress("192.0.2.10")!) == true)
        #expect(lookup(s, "192.0.2.10", 80) == 0)
        #expect(lookup(s, "192.0.2.10", 81) == 1)
        #expect(lookup(s, "192.0.2.10", 80, IPProtocol.udp) == 2)
        #expect(lookup(s, "192.0.2.10", 80, 47) == -1)
        #expect(lookup(s, "2001:db8::1", 443) == 3)
        #expect(lookup(s, "2001:db8::1", 80) == -1)
        #expect(isVIPAddress(s, IPAddress("192.0.2.11")!) == true)
        #expect(lookup(s, "192.0.2.11", 53) == -1)
        #expect(isVIPAddress(s, IPAddress("192.0.2.12")!) == false)
        #expect(lookup(s, "192.0.2.12", 80) == -1)
        // An IPv4 address and the IPv6 address with the same low bits are different VIPs.
        let lookalike = IPAddress(high: 0, low: 0xC000_020A, isV6: true)
        #expect(isVIPAddress(s, lookalike) == false)
        #expect(lookup(s, lookalike.description, 80) == -1)
    }

    @Test func anyPortVIPsAloneServeEveryPort() {
        let spec = SnapshotSpec(
            services: [service("192.0.2.10", 0), service("192.0.2.10", 0, IPProtocol.udp)],
            tableSize: 7, tunnelSourceV4: IPAddress("10.0.0.1"), tunnelSourceV6: nil)
        let s = ForwardingSnapshot(spec, generation: 1)
        #expect(lookup(s, "192.0.2.10", 443) == 0)
        #expect(lookup(s, "192.0.2.10", 0, IPProtocol.udp) == 1)
        #expect(lookup(s, "192.0.2.10", 443, IPProtocol.icmp) == -1)
    }

    @Test func keepsEachVIPsBackendsInAddressOrder() {
        let spec = SnapshotSpec(
            services: [service("192.0.2.10", 80, backends: ["10.1.0.9", "10.1.0.1", "10.1.0.5"])],
            tableSize: 7, tunnelSourceV4: nil, tunnelSourceV6: nil)
        let s = ForwardingSnapshot(spec, generation: 1)
        #expect((0..<3).map { s.backends[$0].address.description } == ["10.1.0.1", "10.1.0.5", "10.1.0.9"])
        #expect(s.slot(of: IPAddress("10.1.0.9")!, vip: 0) == 2)
        #expect(s.slot(of: IPAddress("10.1.0.2")!, vip: 0) == nil)
    }

    @Test func manyVIPsOnOneAddressAllResolve() {
        let services = (1...500).map { service("192.0.2.10", UInt16($0)) }
        let s = ForwardingSnapshot(SnapshotSpec(services: services, tableSize: 7, tunnelSourceV4: nil, tunnelSourceV6: nil), generation: 1)
        for p in 1...500 { #expect(lookup(s, "192.0.2.10", UInt16(p)) == p - 1) }
    }
}
