// Packets Tern must not answer or forward whatever the config: ICMP replies to sources that are not
// one host (RFC 1122 3.2.2, RFC 4443 2.4), and GUE inside GUE.

import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernTestSupport
@testable import TernWire

func echoRequest(from source: IPAddress, to vip: IPAddress) -> [UInt8] {
    let icmp = Frames.icmpEcho(source: source, destination: vip)
    if vip.isV6 {
        return Frames.ethernet(
            Frames.ipv6(source: source, destination: vip, nextHeader: IPProtocol.icmpv6, payload: icmp), etherType: EtherType.ipv6
        )
    }
    return Frames.ethernet(
        Frames.ipv4(source: source, destination: vip, protocol: IPProtocol.icmp, payload: icmp), etherType: EtherType.ipv4)
}

let notOneHost = [
    "255.255.255.255", "224.0.0.1", "239.1.2.3", "0.0.0.0", "0.1.2.3", "127.0.0.1", "240.0.0.1", "250.1.1.1",
]
let notOneHostV6 = ["::", "::1", "ff02::1", "ff05::2", "::ffff:198.51.100.1"]

@Suite struct SourceRulesTests {
    @Test func echoRequestsFromSourcesThatAreNotOneHostAreDroppedNotAnswered() {
        let v6 = ServiceSpec(
            address: ip("2001:db8::10"), port: 80, ipProtocol: IPProtocol.tcp, encapsulation: .ipip,
            backends: [(ip("fc00::1"), 100)])
        var sim = makeSimulator([web([("10.1.0.1", 100)]), v6])
        for s in notOneHost {
            let (o, reply) = sim.run(echoRequest(from: ip(s), to: ip("192.0.2.10")))
            #expect(o == .dropBadSource && reply == nil, "\(s)")
        }
        for s in notOneHostV6 {
            #expect(sim.run(echoRequest(from: ip(s), to: ip("2001:db8::10"))).0 == .dropBadSource, "\(s)")
        }
        // The VIP itself, or another VIP of the node, is no client either.
        #expect(sim.run(echoRequest(from: ip("192.0.2.10"), to: ip("192.0.2.10"))).0 == .dropBadSource)
        // Ordinary and link-local unicast sources are answered.
        for s in ["198.51.100.1", "169.254.1.1"] {
            #expect(sim.run(echoRequest(from: ip(s), to: ip("192.0.2.10"))).0 == .replied, "\(s)")
        }
        #expect(sim.run(echoRequest(from: ip("fe80::1"), to: ip("2001:db8::10"))).0 == .replied)
        #expect(sim.worker.counters[.dropBadSource] == UInt64(notOneHost.count + notOneHostV6.count + 1))
    }

    /// A VIP that is down (too few live backends) stops answering pings, as its route is withdrawn.
    @Test func echoRequestsToAnAddressWhoseVIPsAreAllDownAreDroppedNoBackend() {
        var down = web([("10.1.0.1", 100)])
        down.isUp = false
        var other = web([("10.1.0.1", 100)])
        other.port = 443
        var sim = makeSimulator([down, other])
        #expect(sim.run(echoRequest(from: ip("198.51.100.1"), to: ip("192.0.2.10"))).0 == .replied)  // :443 is up
        other.isUp = false
        sim = makeSimulator([down, other])
        let (o, reply) = sim.run(echoRequest(from: ip("198.51.100.1"), to: ip("192.0.2.10")))
        #expect(o == .dropNoBackend && reply == nil)
    }

    @Test func tooBigPacketsFromSourcesThatAreNotOneHostGetNoReply() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])], mtu: 1280)
        for s in notOneHost + ["192.0.2.10"] {
            let big = Frames.flow(
                source: ip(s), destination: ip("192.0.2.10"), sourcePort: 1, destinationPort: 80,
                payload: [UInt8](repeating: 7, count: 1280))
            let (o, reply) = sim.run(big)
            #expect(o == .dropBadSource && reply == nil, "\(s)")
        }
    }

    @Test func udpToAGUEVIPsOwnGUEPortIsDroppedAsGUEInGUE() {
        let gue = ServiceSpec(
            address: ip("192.0.2.20"), port: 0, ipProtocol: IPProtocol.udp, encapsulation: .gue, guePort: 6080,
            backends: [(ip("10.1.0.1"), 100)])
        var sim = makeSimulator([gue])
        let inner = Frames.flow(
            source: ip("198.51.100.1"), destination: ip("192.0.2.20"), sourcePort: 5000, destinationPort: 6080, udp: true)
        #expect(sim.run(inner).0 == .dropGUEInGUE)
        let other = Frames.flow(
            source: ip("198.51.100.1"), destination: ip("192.0.2.20"), sourcePort: 5000, destinationPort: 6081, udp: true)
        #expect(sim.run(other).0 == .forwarded)
        #expect(sim.worker.counters[.dropGUEInGUE] == 1)
        // TCP to that port number is no GUE: a TCP GUE VIP forwards it.
        let tcp = ServiceSpec(
            address: ip("192.0.2.21"), port: 0, ipProtocol: IPProtocol.tcp, encapsulation: .gue, guePort: 6080,
            backends: [(ip("10.1.0.1"), 100)])
        var tcpSim = makeSimulator([tcp])
        let t = Frames.flow(source: ip("198.51.100.1"), destination: ip("192.0.2.21"), sourcePort: 5000, destinationPort: 6080)
        #expect(tcpSim.run(t).0 == .forwarded)
    }

    /// The guard is asked where a flow is placed, not per packet: a flow established to a port
    /// that a reload then makes the VIP's gue_port is dropped from the new snapshot on.
    @Test func aFlowToAPortThatAReloadMadeTheGUEPortIsDroppedAsGUEInGUE() {
        func gue(_ port: UInt16) -> ServiceSpec {
            ServiceSpec(
                address: ip("192.0.2.20"), port: 0, ipProtocol: IPProtocol.udp, encapsulation: .gue, guePort: port,
                backends: [(ip("10.1.0.1"), 100)])
        }
        var sim = makeSimulator([gue(6080)])
        let flow = Frames.flow(
            source: ip("198.51.100.1"), destination: ip("192.0.2.20"), sourcePort: 5000, destinationPort: 7000, udp: true)
        #expect(sim.run(flow).0 == .forwarded && sim.run(flow).0 == .forwarded)
        var next = makeSimulator([gue(7000)], generation: 2)
        swap(&next.worker, &sim.worker)
        #expect(next.run(flow).0 == .dropGUEInGUE && next.run(flow).0 == .dropGUEInGUE)
        #expect(next.worker.counters[.dropGUEInGUE] == 2)
    }
}
