import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernTestSupport
@testable import TernWire

@Suite struct NoNeighborTests {
    /// Until a learned next hop's MAC is known, nothing that would go to it is sent: not
    /// encapsulated packets, not echo replies. Once it is known, the same packets go out to it.
    @Test func packetsForAnUnknownNextHopAreDroppedNoNeighborUntilItsMACIsKnown() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])])
        sim.worker.port.gatewayMAC = PortContext.unknownMAC
        sim.worker.port.replyGatewayMAC = PortContext.unknownMAC
        let client = ip("198.51.100.7")
        let echo = Frames.ethernet(
            Frames.ipv4(
                source: client, destination: ip("192.0.2.10"), protocol: IPProtocol.icmp,
                payload: Frames.icmpEcho(source: client, destination: ip("192.0.2.10"))),
            etherType: EtherType.ipv4)
        #expect(sim.run(clientFlow(1)).0 == .dropNoNeighbor)
        #expect(sim.run(echo).0 == .dropNoNeighbor)
        #expect(Outcome.dropNoNeighbor.dropReason == "no_neighbor")
        sim.worker.port.gatewayMAC = gateway
        sim.worker.port.replyGatewayMAC = gateway
        let (outcome, frame) = sim.run(clientFlow(1))
        #expect(outcome == .forwarded && frame.map { Array($0[0..<6]) } == [0x02, 0, 0, 0, 0, 0xFE])
        #expect(sim.run(echo).0 == .replied)
    }
}
