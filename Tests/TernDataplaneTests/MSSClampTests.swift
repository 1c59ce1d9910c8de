// `[[port]] clamp_mss` and `[[vip]] clamp_mss`: a SYN's MSS option is lowered to what the tunnel
// carries; nothing else is.

import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernMetrics
@testable import TernTestSupport
@testable import TernWire

func clampingSimulator(_ services: [ServiceSpec], clamp: Bool = true) -> Simulator {
    let spec = SnapshotSpec(services: services, tableSize: 65537, tunnelSourceV4: ip("10.0.0.10"), tunnelSourceV6: ip("fc00::10"))
    let worker = Worker(
        index: 0, port: PortContext(mac: ours, gatewayMAC: gateway, mtu: 1500, clampMSS: clamp),
        settings: WorkerSettings(flowTableEntries: 1 << 12, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10))
    return Simulator(snapshot: ForwardingSnapshot(spec, generation: 1), worker: worker)
}

/// A client's TCP segment to 192.0.2.10:80 with an MSS option of `mss`.
func synFrame(mss: UInt16, flags: UInt8 = TCPFlag.syn, port: UInt16 = 40000) -> [UInt8] {
    let tcp = Frames.tcp(
        source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: port, destinationPort: 80, flags: flags,
        options: [2, 4, UInt8(mss >> 8), UInt8(mss & 0xFF)])
    return Frames.ethernet(
        Frames.ipv4(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), protocol: IPProtocol.tcp, payload: tcp),
        etherType: EtherType.ipv4)
}

/// The MSS option of the inner segment of an IPv4-outer frame (Ethernet 14 + outer 20 + inner 20 + TCP 20, then kind and length).
func innerMSS(_ frame: [UInt8], outer: Int = 20) -> UInt16 {
    let at = 14 + outer + 20 + 20 + 2
    return UInt16(frame[at]) << 8 | UInt16(frame[at + 1])
}

@Suite struct MSSClampTests {
    @Test func aSYNsMSSIsLoweredToWhatTheTunnelCarries() {
        var sim = clampingSimulator([web([("10.1.0.1", 100)])])
        let (o, out) = sim.run(synFrame(mss: 1460))
        #expect(o == .forwarded && innerMSS(out!) == 1440)  // 1500 - 20 (outer) - 20 - 20
        #expect(sim.worker.stats.load(CounterSlot.mssClamped) == 1)
        // GUE: 1500 - 20 - 8 - 4 - 20 - 20.
        var gue = clampingSimulator([web([("10.1.0.1", 100)], encapsulation: .gue)])
        #expect(innerMSS(gue.run(synFrame(mss: 1460)).1!, outer: 32) == 1428)
    }

    @Test func smallMSSsOtherSegmentsAndPortsWithoutClampingAreLeftAlone() {
        var sim = clampingSimulator([web([("10.1.0.1", 100)])])
        #expect(innerMSS(sim.run(synFrame(mss: 1200)).1!) == 1200)
        #expect(innerMSS(sim.run(synFrame(mss: 1460, flags: TCPFlag.syn | TCPFlag.ack, port: 40001)).1!) == 1460)
        var off = clampingSimulator([web([("10.1.0.1", 100)])], clamp: false)
        #expect(innerMSS(off.run(synFrame(mss: 1460)).1!) == 1460)
        #expect(sim.worker.stats.load(CounterSlot.mssClamped) == 0 && off.worker.stats.load(CounterSlot.mssClamped) == 0)
    }

    @Test func aRetransmittedSYNIsClampedToo() {
        var sim = clampingSimulator([web([("10.1.0.1", 100)])])
        _ = sim.run(synFrame(mss: 1460))
        #expect(innerMSS(sim.run(synFrame(mss: 1460)).1!) == 1440 && sim.worker.stats.load(CounterSlot.mssClamped) == 2)
    }

    @Test func aVIPWithClampMSSClampsItsSYNsOnAPortWithout() {
        var clamped = web([("10.1.0.1", 100)])
        clamped.clampMSS = true
        var other = web([("10.1.0.2", 100)])
        other.port = 8080
        var sim = clampingSimulator([clamped, other], clamp: false)
        #expect(innerMSS(sim.run(synFrame(mss: 1460)).1!) == 1440)
        // Retransmitted: the flow table knows it, and it is clamped again.
        #expect(innerMSS(sim.run(synFrame(mss: 1460)).1!) == 1440)
        // A SYN-ACK and a small MSS are left alone; so is another VIP's SYN.
        #expect(innerMSS(sim.run(synFrame(mss: 1460, flags: TCPFlag.syn | TCPFlag.ack, port: 40001)).1!) == 1460)
        #expect(innerMSS(sim.run(synFrame(mss: 1200, port: 40002)).1!) == 1200)
        #expect(sim.worker.stats.load(CounterSlot.mssClamped) == 2)
        let tcp = Frames.tcp(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 40003, destinationPort: 8080,
            flags: TCPFlag.syn,
            options: [2, 4, 0x05, 0xB4])
        let (o, out) = sim.run(
            Frames.ethernet(
                Frames.ipv4(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), protocol: IPProtocol.tcp, payload: tcp),
                etherType: EtherType.ipv4))
        #expect(o == .forwarded && innerMSS(out!) == 1460 && sim.worker.stats.load(CounterSlot.mssClamped) == 2)
    }

    @Test func aClampingVIPStillPlacesByItsHashMode() {
        var spec = web([("10.1.0.1", 100), ("10.1.0.2", 100), ("10.1.0.3", 100)])
        spec.clampMSS = true
        spec.hashMode = .source
        var sim = clampingSimulator([spec], clamp: false)
        var backends = Set<[UInt8]>()
        for p in 0..<32 {
            let (_, out) = sim.run(synFrame(mss: 1460, port: UInt16(41000 + p)))
            #expect(innerMSS(out!) == 1440)
            backends.insert(Array(out![30..<34]))  // outer destination
        }
        #expect(backends.count == 1 && sim.worker.stats.load(CounterSlot.mssClamped) == 32)
    }
}
