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
    let udp = Frames.udp(
        source: ip(client), destination: ip("192.0.2.10"), sourcePort: port, destinationPort: 53,
        payload: [UInt8](repeating: UInt8(id & 0xFF), count: bytes))
    return stride(from: 0, to: udp.count, by: size).map { start in
        let chunk = Array(udp[start..<min(start + size, udp.count)])
        return Frames.ethernet(
            Frames.ipv4(
                source: ip(client), destination: ip("192.0.2.10"), protocol: IPProtocol.udp, payload: chunk, dontFragment: false,
                identification: id, fragmentOffset: UInt16(start / 8), moreFragments: start + size < udp.count),
            etherType: EtherType.ipv4)
    }
}

/// The fragments of an ICMP echo request (`type` 8) of 3,000 bytes from `client`.
func echoFragments(client: String, id: UInt16, type: UInt8 = 8) -> [[UInt8]] {
    let icmp = Frames.icmpEcho(
        source: ip(client), destination: ip("192.0.2.10"), type: type, payload: [UInt8](repeating: 7, count: 3000))
    return stride(from: 0, to: icmp.count, by: 1200).map { start in
        Frames.ethernet(
            Frames.ipv4(
                source: ip(client), destination: ip("192.0.2.10"), protocol: IPProtocol.icmp,
                payload: Array(icmp[start..<min(start + 1200, icmp.count)]), dontFragment: false, identification: id,
                fragmentOffset: UInt16(start / 8), moreFragments: start + 1200 < icmp.count),
            etherType: EtherType.ipv4)
    }
}

@Suite struct FragmentTests {
    @Test func laterFragmentsFollowTheFirstToItsFlowsBackend() {
        var sim = makeSimulator([dnsService()])
        for k in 0..<40 {
            let client = "198.51.100.\(k + 1)"
            // Where the flow's unfragmented packets go.
            let whole = Frames.flow(
                source: ip(client), destination: ip("192.0.2.10"), sourcePort: 5000, destinationPort: 53, udp: true)
            let backend = outerDestination(sim.run(whole).1!)
            for f in udpFragments(client: client, port: 5000, id: UInt16(k)) {
                let (o, out) = sim.run(f)
                #expect(o == .forwarded && outerDestination(out!) == backend)
            }
        }
        #expect(sim.worker.stats.load(CounterSlot.fragmentsFollowed) == 40 * 2)
    }

    @Test func fragmentsAheadOfTheirFirstAreHeldAndSentAfterItInArrivalOrder() {
        var sim = makeSimulator([dnsService()])
        let f = udpFragments(client: "198.51.100.1", port: 5000, id: 7)
        #expect(sim.run(f[2]).0 == .held && sim.run(f[1]).0 == .held)
        #expect(sim.takeReleased().isEmpty)
        // The same identification from another source is another datagram: held too.
        #expect(sim.run(udpFragments(client: "198.51.100.2", port: 5000, id: 7)[1]).0 == .held)
        let (o, first) = sim.run(f[0])
        #expect(o == .forwarded)
        let released = sim.takeReleased()
        #expect(released.map(\.0) == [.forwarded, .forwarded])
        // The held fragments, unchanged inside their tunnels, to the first's backend, in arrival order.
        #expect(released.map { outerDestination($0.1!) } == [outerDestination(first!), outerDestination(first!)])
        #expect(released.map { Array($0.1![34...]) } == [Array(f[2][14...]), Array(f[1][14...])])
        #expect(sim.worker.counters[.held] == 3 && sim.worker.fragments.pointee.heldCount == 1)
        // Held fragments are not final outcomes: received counts the 3 sent, not the holds.
        #expect(sim.worker.counters.received == 3)
    }

    @Test func aFragmentHeldEarlierInTheFirstsOwnBurstIsReleasedAfterIt() {
        // As ternd's worker loop does it: the burst runs whole, then the held ones are handed over.
        var sim = makeSimulator([dnsService()])
        var frames = udpFragments(client: "198.51.100.1", port: 5000, id: 7).reversed().map { $0 }
        let packets = UnsafeMutablePointer<Packet>.allocate(capacity: frames.count)
        let outcomes = UnsafeMutablePointer<Outcome>.allocate(capacity: frames.count)
        defer {
            packets.deallocate()
            outcomes.deallocate()
        }
        for i in frames.indices {
            frames[i] = [UInt8](repeating: 0, count: Simulator.headroom) + frames[i]
            packets[i] = frames[i].withUnsafeMutableBytes {
                Packet(
                    data: $0.baseAddress! + Simulator.headroom, length: $0.count - Simulator.headroom,
                    headroom: Simulator.headroom)
            }
        }
        sim.runBurst(packets, count: frames.count, outcomes: outcomes)
        #expect((0..<frames.count).map { outcomes[$0] } == [.held, .held, .forwarded])
        for i in 0..<2 {
            let kept = sim.worker.fragments.pointee.hold(frame: packets[i].data, length: packets[i].length, handle: UInt(i + 1))
            #expect(kept)
        }
        let handles = UnsafeMutablePointer<UInt>.allocate(capacity: FragmentTable.heldCapacity)
        defer { handles.deallocate() }
        let n = sim.worker.fragments.pointee.takeReleased(into: handles)
        #expect(n == 2 && handles[0] == 1 && handles[1] == 2)
    }

    @Test func aHeldFragmentWhoseFirstNeverComesTimesOutCounted() {
        var sim = makeSimulator([dnsService()])
        let f = udpFragments(client: "198.51.100.1", port: 5000, id: 7)
        #expect(sim.run(f[1]).0 == .held)
        #expect(sim.run(f[2], timestampNanoseconds: 1_000_000_000).0 == .held)
        // Two seconds on, the first is given up; the second goes when the simulator finishes.
        _ = sim.run(clientFlow(1, port: 9), timestampNanoseconds: 2_000_000_000)
        #expect(sim.worker.counters[.dropFragmentTimeout] == 1 && sim.worker.fragments.pointee.heldCount == 1)
        sim.finish()
        #expect(sim.worker.counters[.dropFragmentTimeout] == 2 && sim.worker.fragments.pointee.heldCount == 0)
        // The first now comes too late: its fragments are gone, it is forwarded alone.
        #expect(sim.run(f[0], timestampNanoseconds: 2_000_000_000).0 == .forwarded && sim.takeReleased().isEmpty)
        #expect(sim.worker.counters.received == 4)
    }

    @Test func whenTheHoldIsFullAFragmentAheadOfItsFirstIsDropped() {
        var sim = makeSimulator([dnsService()])
        for k in 0..<FragmentTable.heldCapacity {
            #expect(sim.run(udpFragments(client: "198.51.100.1", port: 5000, id: UInt16(k))[1]).0 == .held)
        }
        #expect(sim.run(udpFragments(client: "198.51.100.1", port: 5000, id: 999)[1]).0 == .dropFragment)
        // A first lets its own fragment go, which makes room again.
        #expect(sim.run(udpFragments(client: "198.51.100.1", port: 5000, id: 5)[0]).0 == .forwarded)
        #expect(sim.takeReleased().map(\.0) == [.forwarded])
        #expect(sim.run(udpFragments(client: "198.51.100.1", port: 5000, id: 999)[1]).0 == .held)
    }

    @Test func afterItsLastFragmentADatagramsEntryLivesOnBriefly() {
        var sim = makeSimulator([dnsService()])
        let f = udpFragments(client: "198.51.100.1", port: 5000, id: 7)
        #expect(sim.run(f[0]).0 == .forwarded && sim.run(f[2]).0 == .forwarded)
        // Reordered middles still follow within the second; later they are held as a new datagram's.
        #expect(sim.run(f[1]).0 == .forwarded)
        #expect(sim.run(f[1], timestampNanoseconds: 3_000_000_000).0 == .held)
    }

    @Test func fragmentsToNoServiceAndOtherICMPFragmentsAreDropped() {
        var sim = makeSimulator([dnsService()])
        let other = udpFragments(client: "198.51.100.1", port: 5000, id: 9).map { frame -> [UInt8] in
            var f = frame
            f[14 + 20 + 3] = 54  // UDP destination port 54: no VIP
            return f
        }
        #expect(sim.run(other[0]).0 == .dropNoService)
        #expect(sim.run(echoFragments(client: "198.51.100.1", id: 3, type: 0)[0]).0 == .dropFragment)  // an echo reply
        #expect(sim.run(echoFragments(client: "192.0.2.10", id: 3)[0]).0 == .dropBadSource)  // from the VIP itself
        #expect(sim.run(echoFragments(client: "224.0.0.1", id: 3)[0]).0 == .dropBadSource)
    }

    @Test func fragmentedEchoRequestsGoToABackendOfTheAddresssFirstVIPThatIsUp() {
        var down = web([("10.9.0.1", 100)])
        down.isUp = false
        var sim = makeSimulator([down, dnsService()])
        let f = echoFragments(client: "198.51.100.1", id: 11)
        let outs = f.map { sim.run($0) }
        #expect(outs.allSatisfy { $0.0 == .forwarded })
        let backends = Set(outs.map { outerDestination($0.1!) })
        #expect(backends.count == 1 && backends.first!.description.hasPrefix("10.1.0."))  // the DNS VIP's, not the down one's
        // Whole echo requests are still answered by Tern itself.
        let whole = Frames.ethernet(
            Frames.ipv4(
                source: ip("198.51.100.1"), destination: ip("192.0.2.10"), protocol: IPProtocol.icmp,
                payload: Frames.icmpEcho(source: ip("198.51.100.1"), destination: ip("192.0.2.10"))),
            etherType: EtherType.ipv4)
        #expect(sim.run(whole).0 == .replied)
    }

    @Test func aTooBigAboutTheBackendsEchoReplyGoesToTheBackendThatTookTheRequest() {
        var sim = makeSimulator([dnsService()])
        let request = sim.run(echoFragments(client: "198.51.100.1", id: 12)[0])
        #expect(request.0 == .forwarded)
        // The backend's reply (from the VIP) met a narrower path: the router's "fragmentation needed" quotes it.
        let reply = Frames.ipv4(
            source: ip("192.0.2.10"), destination: ip("198.51.100.1"), protocol: IPProtocol.icmp,
            payload: Frames.icmpEcho(source: ip("192.0.2.10"), destination: ip("198.51.100.1"), type: 0), dontFragment: false)
        let error = Frames.ethernet(
            Frames.ipv4(
                source: ip("203.0.113.1"), destination: ip("192.0.2.10"), protocol: IPProtocol.icmp,
                payload: [3, 4, 0, 0, 0, 0, 0x05, 0x78] + Array(reply.prefix(28))),
            etherType: EtherType.ipv4)
        let (o, out) = sim.run(error)
        #expect(o == .forwarded && outerDestination(out!) == outerDestination(request.1!))
        // One quoting a later fragment of the reply (no ICMP header to read) goes there too.
        var aboutLater = error
        aboutLater[14 + 20 + 8 + 6] = 0x00
        aboutLater[14 + 20 + 8 + 7] = 0xAD  // fragment offset 173 x 8
        let (laterOutcome, laterOut) = sim.run(aboutLater)
        #expect(laterOutcome == .forwarded && outerDestination(laterOut!) == outerDestination(request.1!))
        // One quoting an echo request (not something a VIP sends) is not steered.
        var aboutRequest = error
        aboutRequest[14 + 20 + 8 + 20] = 8
        #expect(sim.run(aboutRequest).0 == .dropICMPUnsupported)
    }

    @Test func aFullBucketGivesUpItsOldestEntryCounted() {
        let stats = CounterBlock.allocate()
        defer { stats.deallocate() }
        var table = FragmentTable(capacity: 4, counters: stats)  // one bucket of 4
        let t = FiveTuple(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 1, destinationPort: 53, ipProtocol: 17)
        for id in UInt32(0)..<4 {
            table.now = 1 + id
            let fresh = table.insert(
                source: ip("198.51.100.1"), destination: ip("192.0.2.10"), id: id, ipProtocol: 17, tuple: t, hash: 1, vip: 0,
                generation: 1)
            #expect(fresh)
        }
        let evicting = table.insert(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), id: 9, ipProtocol: 17, tuple: t, hash: 1, vip: 0,
            generation: 1)
        #expect(!evicting)
        let oldest = table.find(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), id: 0, ipProtocol: 17, last: false)
        let newer = table.find(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), id: 3, ipProtocol: 17, last: false)
        #expect(oldest == nil && newer != nil)
        table.now = 100  // past the lifetime
        let expired = table.find(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), id: 3, ipProtocol: 17, last: false)
        #expect(expired == nil)
    }
}
