// `vip.hash`: what Maglev hashes for a VIP's new flows. The flow table still keys on the whole
// 5-tuple; only the pick of a new flow changes.

import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernTestSupport
@testable import TernWire

func hashed(_ mode: FlowHash.Mode) -> ServiceSpec {
    var s = web((1...8).map { ("10.1.0.\($0)", 100) })
    s.hashMode = mode
    return s
}

/// The backend a flow from `client`:`port` to the VIP (port 80, or `vipPort`) reaches.
func backend(_ sim: inout Simulator, client: UInt32, port: UInt16, vipPort: UInt16 = 80) -> IPAddress {
    outerDestination(
        sim.run(
            Frames.flow(source: IPAddress(v4: client), destination: ip("192.0.2.10"), sourcePort: port, destinationPort: vipPort)
        ).1!)
}

@Suite struct HashModeTests {
    @Test func sourceHashingSendsEveryConnectionOfAClientToOneBackend() {
        var sim = makeSimulator([hashed(.source)])
        var seen: Set<IPAddress> = []
        for client in UInt32(0xC633_0001)...0xC633_0040 {
            let first = backend(&sim, client: client, port: 1024)
            for port in UInt16(1025)...1040 { #expect(backend(&sim, client: client, port: port) == first) }
            seen.insert(first)
        }
        #expect(seen.count == 8)  // clients still spread over every backend
    }

    @Test func sourcePortLessHashingKeepsAClientWhoseSourcePortChanges() {
        var sim = makeSimulator([hashed(.sourcePortLess)])
        var fiveTuple = makeSimulator([hashed(.fiveTuple)])
        var moved = 0
        for client in UInt32(0xC633_0001)...0xC633_0020 {
            let first = backend(&sim, client: client, port: 1024)
            for port in UInt16(2000)...2010 { #expect(backend(&sim, client: client, port: port) == first) }
            if (2000...2010).contains(where: {
                backend(&fiveTuple, client: client, port: $0) != backend(&fiveTuple, client: client, port: 1024)
            }) {
                moved += 1
            }
        }
        #expect(moved > 20)  // with the 5-tuple, a new source port is a new pick
    }

    /// Every node must compute the same pick: the masked hashes are pinned.
    @Test func theMaskedHashesArePinned() {
        let t = FiveTuple(
            source: ip("198.51.100.7"), destination: ip("192.0.2.10"), sourcePort: 40000, destinationPort: 443,
            ipProtocol: IPProtocol.tcp)
        var other = t
        other.portsAndProtocol =
            FiveTuple(
                source: ip("198.51.100.7"), destination: ip("192.0.2.99"), sourcePort: 1, destinationPort: 80,
                ipProtocol: IPProtocol.udp
            ).portsAndProtocol
        other.destinationLow = ip("192.0.2.99").low
        #expect(FlowHash.hash(t, mode: .source) == FlowHash.hash(other, mode: .source))
        #expect(FlowHash.hash(t, mode: .fiveTuple) == FlowHash.hash(t))
        // Flow hash version 2 (reference.py computes the same; version 1 gave 18,108,195,956,610,075,966
        // and 16,567,679,332,576,915,675).
        #expect(FlowHash.hash(t, mode: .source) == 14_313_363_413_047_342_429)
        #expect(FlowHash.hash(t, mode: .sourcePortLess) == 14_613_709_340_128_214_828)
    }
}
