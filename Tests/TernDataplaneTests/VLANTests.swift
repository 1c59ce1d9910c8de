// `[[port]] vlan`: what Tern transmits carries the port's tag; frames tagged with another id are the host's.

import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernTestSupport
@testable import TernWire

func vlanSimulator(vlan: UInt16, replyVLAN: UInt16) -> Simulator {
    let spec = SnapshotSpec(
        services: [web([("10.1.0.1", 100)])], tableSize: 65537, tunnelSourceV4: ip("10.0.0.10"), tunnelSourceV6: ip("fc00::10"))
    let worker = Worker(
        index: 0, port: PortContext(mac: ours, gatewayMAC: gateway, mtu: 1500, vlan: vlan, replyVLAN: replyVLAN),
        settings: WorkerSettings(flowTableEntries: 1 << 12, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10))
    return Simulator(snapshot: ForwardingSnapshot(spec, generation: 1), worker: worker)
}

func echoRequest(vlan: UInt16?) -> [UInt8] {
    let icmp = Frames.icmpEcho(source: ip("198.51.100.1"), destination: ip("192.0.2.10"))
    return Frames.ethernet(
        Frames.ipv4(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), protocol: IPProtocol.icmp, payload: icmp),
        etherType: EtherType.ipv4, vlan: vlan)
}

func toWeb(vlan: UInt16? = nil, port: UInt16 = 40000) -> [UInt8] {
    Frames.flow(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: port, destinationPort: 80, vlan: vlan)
}

/// The 802.1Q id of a tagged frame, nil when untagged.
func vlanID(_ frame: [UInt8]) -> UInt16? {
    frame[12] == 0x81 && frame[13] == 0x00 ? UInt16(frame[14] & 0x0F) << 8 | UInt16(frame[15]) : nil
}

@Suite struct VLANTests {
    @Test func encapsulatedFramesCarryTheBackendPortsTag() {
        var sim = vlanSimulator(vlan: 100, replyVLAN: 100)
        for request in [toWeb(), toWeb(vlan: 100, port: 40001)] {
            let (o, out) = sim.run(request)
            guard let out else {
                Issue.record("\(o)")
                continue
            }
            #expect(o == .forwarded && vlanID(out) == 100)
            #expect(out[16] == 0x08 && out[17] == 0x00 && out[18] == 0x45)  // IPv4 outer after the tag
            let inner = Array(request[(request.count - 40)...])
            #expect(Array(out[(out.count - 40)...]) == inner)  // the inner packet unchanged
            #expect(out.count == 18 + 20 + 40)
        }
    }

    @Test func framesTaggedWithAnotherIDAreTheHosts() {
        var sim = vlanSimulator(vlan: 100, replyVLAN: 100)
        #expect(sim.run(toWeb(vlan: 200)).0 == .host)
        #expect(sim.run(echoRequest(vlan: 200)).0 == .host)
        // A port without a VLAN accepts any tag and transmits untagged, as before.
        var plain = vlanSimulator(vlan: 0, replyVLAN: 0)
        let (o, out) = plain.run(toWeb(vlan: 200))
        #expect(o == .forwarded && vlanID(out!) == nil && out!.count == 14 + 20 + 40)
    }

    @Test func priorityTaggedFramesCountAsUntagged() {
        // VLAN id 0 carries only a priority (802.1Q): the frame is the port's untagged traffic.
        var sim = vlanSimulator(vlan: 100, replyVLAN: 100)
        let (o, out) = sim.run(toWeb(vlan: 0))
        #expect(o == .forwarded && vlanID(out!) == 100)
        #expect(sim.run(echoRequest(vlan: 0)).0 == .replied)
    }

    @Test func repliesCarryTheReceivingPortsTag() {
        // Separate ports: backends behind VLAN 300, clients on VLAN 100.
        var sim = vlanSimulator(vlan: 300, replyVLAN: 100)
        #expect(vlanID(sim.run(toWeb()).1!) == 300)
        for vlan in [nil, UInt16(100)] {
            let (o, out) = sim.run(echoRequest(vlan: vlan))
            #expect(o == .replied && vlanID(out!) == 100 && out![16] == 0x08 && out![17] == 0x00)
            #expect(out!.count == 18 + 20 + 8 + 4)
        }
    }
}
