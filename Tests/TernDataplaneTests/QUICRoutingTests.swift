// `quic = true`: a new flow whose connection ID names a backend's server id goes to that backend,
// whatever its 5-tuple (NAT rebinding, migration); everything else is placed as before.

import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernMetrics
@testable import TernTestSupport
@testable import TernWire

let quicBackends = ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"]

func quicSimulator(quic: Bool = true) -> Simulator {
    var s = ServiceSpec(
        address: ip("192.0.2.10"), port: 443, ipProtocol: IPProtocol.udp, encapsulation: .ipip,
        backends: quicBackends.map { (ip($0), 100) })
    s.quic = quic
    s.quicServerIDs = [ip("10.1.0.1"): 1024, ip("10.1.0.2"): 197_634, ip("10.1.0.3"): 0x1234_5678]
    return makeSimulator([s])
}

func quicPacket(sourcePort: UInt16, _ payload: [UInt8], source: String = "198.51.100.1") -> [UInt8] {
    Frames.flow(
        source: ip(source), destination: ip("192.0.2.10"), sourcePort: sourcePort, destinationPort: 443, udp: true,
        payload: payload)
}

/// A short-header packet whose destination ID carries `cid` (its first bytes).
func shortHeader(_ cid: [UInt8]) -> [UInt8] { [0x40] + cid + [UInt8](repeating: 7, count: 8 - cid.count) + Array("data".utf8) }

@Suite struct QUICRoutingTests {
    @Test func aServerIDNamesTheBackendWhateverThe5Tuple() {
        var sim = quicSimulator()
        let cases: [([UInt8], String)] = [
            ([0x41, 0x00, 0x03], "10.1.0.1"),  // v1: 1024
            ([0x80, 0x03, 0x04, 0x02], "10.1.0.2"),  // v2: 197634
            ([0xC0, 0x12, 0x34, 0x56, 0x78], "10.1.0.3"),  // v3
        ]
        for (k, (cid, backend)) in cases.enumerated() {
            // The same connection from 20 source ports and two addresses (rebinding, migration).
            for port in UInt16(50000 + 100 * k)..<UInt16(50020 + 100 * k) {
                for source in ["198.51.100.1", "203.0.113.9"] {
                    let (o, out) = sim.run(quicPacket(sourcePort: port, shortHeader(cid), source: source))
                    #expect(o == .forwarded && outerDestination(out!) == ip(backend))
                }
            }
        }
        #expect(sim.worker.stats.load(CounterSlot.quicByServerID) == 120)
    }

    @Test func initialsUnknownIDsAndPlainVIPsTakeMaglev() {
        var sim = quicSimulator()
        var plain = quicSimulator(quic: false)
        var spread = Set<IPAddress>()
        for port in UInt16(40000)..<40064 {
            // An Initial: the destination ID is the client's pick; placed by Maglev, then kept.
            let initial: [UInt8] = [0xC3, 0, 0, 0, 1, 8, 0x41, 0x00, 0x03, 4, 5, 6, 7, 8, 0]
            let (o, out) = sim.run(quicPacket(sourcePort: port, initial))
            let placed = outerDestination(out!)
            spread.insert(placed)
            #expect(o == .forwarded && outerDestination(plain.run(quicPacket(sourcePort: port, initial)).1!) == placed)
            // The same 5-tuple stays in the flow table, whatever ID it shows next.
            #expect(outerDestination(sim.run(quicPacket(sourcePort: port, shortHeader([0x80, 0x03, 0x04, 0x02]))).1!) == placed)
        }
        #expect(spread.count == 4)
        #expect(
            sim.worker.stats.load(CounterSlot.quicWithoutServerID) == 64 && sim.worker.stats.load(CounterSlot.quicByServerID) == 0
        )
        // Server id 1092 belongs to no backend: Maglev, counted.
        _ = sim.run(quicPacket(sourcePort: 41000, shortHeader([0x41, 0x11, 0x00])))
        #expect(sim.worker.stats.load(CounterSlot.quicUnknownServerID) == 1)
        #expect(plain.worker.stats.load(CounterSlot.quicWithoutServerID) == 0)
    }

    @Test func aBackendLeavingTheVIPLosesItsServerID() {
        var s = ServiceSpec(
            address: ip("192.0.2.10"), port: 443, ipProtocol: IPProtocol.udp, encapsulation: .ipip,
            backends: [(ip("10.1.0.2"), 100)])
        s.quic = true
        s.quicServerIDs = [ip("10.1.0.1"): 1024, ip("10.1.0.2"): 197_634]
        var sim = makeSimulator([s])
        #expect(outerDestination(sim.run(quicPacket(sourcePort: 1, shortHeader([0x41, 0x00, 0x03]))).1!) == ip("10.1.0.2"))
        #expect(sim.worker.stats.load(CounterSlot.quicUnknownServerID) == 1)
    }
}
