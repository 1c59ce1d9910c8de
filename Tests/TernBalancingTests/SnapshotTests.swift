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

@Suite struct SnapshotTests {
    @Test func findsExactVIPsBeforeAnyPortVIPs() {
        let spec = SnapshotSpec(
            services: [
                service("192.0.2.10", 80), service("192.0.2.10", 0), service("192.0.2.10", 0, IPProtocol.udp),
                service("2001:db8::1", 443), service("192.0.2.11", 53, IPProtocol.udp),
            ],
            tableSize: 7, tunnelSourceV4: IPAddress("10.0.0.1"), tunnelSourceV6: nil)
        let s = ForwardingSnapshot(spec, generation: 1)
        let a = s.addresses.find(IPAddress("192.0.2.10")!)
        #expect(a >= 0)
        #expect(s.findVIP(address: a, port: 80, ipProtocol: IPProtocol.tcp) == 0)
        #expect(s.findVIP(address: a, port: 81, ipProtocol: IPProtocol.tcp) == 1)
        #expect(s.findVIP(address: a, port: 80, ipProtocol: IPProtocol.udp) == 2)
        #expect(s.findVIP(address: a, port: 80, ipProtocol: 47) == -1)
        let v6 = s.addresses.find(IPAddress("2001:db8::1")!)
        #expect(s.findVIP(address: v6, port: 443, ipProtocol: IPProtocol.tcp) == 3)
        #expect(s.findVIP(address: v6, port: 80, ipProtocol: IPProtocol.tcp) == -1)
        let dns = s.addresses.find(IPAddress("192.0.2.11")!)
        #expect(s.findVIP(address: dns, port: 53, ipProtocol: IPProtocol.tcp) == -1)
        #expect(s.addresses.find(IPAddress("192.0.2.12")!) == -1)
        // An IPv4 address and the IPv6 address with the same low bits are different VIPs.
        #expect(s.addresses.find(IPAddress(high: 0, low: 0xC000_020A, isV6: true)) == -1)
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
        let a = s.addresses.find(IPAddress("192.0.2.10")!)
        for p in 1...500 { #expect(s.findVIP(address: a, port: UInt16(p), ipProtocol: IPProtocol.tcp) == p - 1) }
    }
}
