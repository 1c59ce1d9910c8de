// IP fragments: later fragments follow their datagram's first fragment to its flow's backend.

import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernMetrics
@testable import TernTestSupport
@testable import TernWire

func dnsService() -> ServiceSpec {
    ServiceSpec(
        address: ip("192.0.2.10"), port: 53, ipProtocol: IPProtocol.udp, encapsulation: .ipip,
        backends: (1...8).map { (ip("10.1.0.\($0)"), 100) })
}

/// The fragments (payload cut at 8-byte multiples of `size`) of a UDP datagram from `client`.
func udpFragments(client: String, port: UInt16, id: UInt16, bytes: Int = 3000, size: Int = 1200) -> [[UInt8]] {
    let udp = Frames.udp(source: ip(client), destination: ip("192.0.2.10"), sourcePort: port, destinationPort: 53,
                         payload: [UInt8](repeating: UInt8(id & 0xFF), count: bytes))
    return stride(from: 0, to: udp.count, by: size).map { start in
        let chunk = Array(udp[start..<min(start + size, udp.count)])
        return Frames.ethernet(
            Frames.ipv4(source: ip(client), destination: ip("192.0.2.10"), protocol: IPProtocol.udp, payload: chunk, dontFragment: false,
                        identification: id, fragmentOffset: UInt16(start / 8), moreFragments: start + size < udp.count),
            etherType: EtherType.ipv4)
    }
}

@Suite struct FragmentTests {
    @Test func laterFragmentsFollowTheFirstToItsFlowsBackend() {
        var sim = makeSimulator([dnsService()])
        for k in 0..<40 {
            let client = "198.51.100.\(k + 1)"
            // Where the flow's unfragmented packets go.
            let whole = Frames.flow(source: ip(client), destination: ip("192.0.2.10"), sourcePort: 5000, destinationPort: 53, udp: true)
            let backend = outerDestination(sim.run(whole).1!)
            for f in udpFragments(client: client, port: 5000, id: UInt16(k)) {
                let (o, out) = sim.run(f)
                #expect(o == .forwarded && outerDestination(out!) == backend)
            }
        }
        #expect(sim.worker.stats.load(CounterSlot.fragmentsFollowed) == 40 * 2)
    }

    @Test func aFragmentAheadOfItsFirstOrWithoutOneIsDropped() {
        var sim = makeSimulator([dnsService()])
        let f = udpFragments(client: "198.51.100.1", port: 5000, id: 7)
        #expect(sim.run(f[2]).0 == .dropFragment && sim.run(f[1]).0 == .dropFragment)
        #expect(sim.run(f[0]).0 == .forwarded)
        // The same identification from another source, or another protocol, is another datagram.
        #expect(sim.run(udpFragments(client: "198.51.100.2", port: 5000, id: 7)[1]).0 == .dropFragment)
        // After its last fragment, the entry lives on briefly (reordered middles), then it is gone.
        #expect(sim.run(f[2], timestampNanoseconds: 1_000_000_000).0 == .forwarded)
        #expect(sim.run(f[1], timestampNanoseconds: 1_000_000_000).0 == .forwarded)
        #expect(sim.run(f[1], timestampNanoseconds: 3_000_000_000).0 == .dropFragment)
        #expect(sim.worker.counters[.dropFragment] == 4)
    }

    @Test func fragmentsToNoServiceAndICMPFragmentsAreDropped() {
        var sim = makeSimulator([dnsService()])
        let other = udpFragments(client: "198.51.100.1", port: 5000, id: 9).map { frame -> [UInt8] in
            var f = frame
            f[14 + 20 + 3] = 54  // UDP destination port 54: no VIP
            return f
        }
        #expect(sim.run(other[0]).0 == .dropNoService)
        let ping = Frames.ethernet(
            Frames.ipv4(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), protocol: IPProtocol.icmp,
                        payload: Frames.icmpEcho(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), payload: [UInt8](repeating: 1, count: 64)),
                        dontFragment: false, moreFragments: true),
            etherType: EtherType.ipv4)
        #expect(sim.run(ping).0 == .dropFragment)
    }

    @Test func aFullBucketGivesUpItsOldestEntryCounted() {
        let stats = CounterBlock.allocate()
        defer { stats.deallocate() }
        var table = FragmentTable(capacity: 4, counters: stats)  // one bucket of 4
        let t = FiveTuple(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 1, destinationPort: 53, ipProtocol: 17)
        for id in UInt32(0)..<4 {
            table.now = 1 + id
            let fresh = table.insert(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), id: id, ipProtocol: 17, tuple: t, hash: 1, vip: 0, generation: 1)
            #expect(fresh)
        }
        let evicting = table.insert(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), id: 9, ipProtocol: 17, tuple: t, hash: 1, vip: 0, generation: 1)
        #expect(!evicting)
        let oldest = table.find(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), id: 0, ipProtocol: 17, last: false)
        let newer = table.find(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), id: 3, ipProtocol: 17, last: false)
        #expect(oldest == nil && newer != nil)
        table.now = 100  // past the lifetime
        let expired = table.find(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), id: 3, ipProtocol: 17, last: false)
        #expect(expired == nil)
    }
}
