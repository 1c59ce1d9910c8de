import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernMetrics
@testable import TernTestSupport
@testable import TernWire

func ip(_ s: String) -> IPAddress { IPAddress(s)! }

let gateway = MACAddress(value: 0x02_00_00_00_00_FE)
let ours = MACAddress(value: 0x02_00_00_00_00_01)

func makeSimulator(_ services: [ServiceSpec], generation: UInt32 = 1, mtu: Int = 1500, flows: Int = 1 << 16) -> Simulator {
    let spec = SnapshotSpec(services: services, tableSize: 65537, tunnelSourceV4: ip("10.0.0.10"), tunnelSourceV6: ip("fc00::10"))
    let worker = Worker(
        index: 0, port: PortContext(mac: ours, gatewayMAC: gateway, mtu: mtu),
        settings: WorkerSettings(flowTableEntries: flows, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10))
    return Simulator(snapshot: ForwardingSnapshot(spec, generation: generation), worker: worker)
}

func makeSimulatorWithEchoBudget(_ perSecond: UInt32) -> Simulator {
    let spec = SnapshotSpec(
        services: [web([("10.1.0.1", 100)])], tableSize: 1009, tunnelSourceV4: ip("10.0.0.10"), tunnelSourceV6: nil)
    let worker = Worker(
        index: 0, port: PortContext(mac: ours, gatewayMAC: gateway, mtu: 1500),
        settings: WorkerSettings(
            flowTableEntries: 1024, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10,
            echoRepliesPerSecond: perSecond))
    return Simulator(snapshot: ForwardingSnapshot(spec, generation: 1), worker: worker)
}

func web(_ backends: [(String, Int)], encapsulation: Encapsulation = .ipip) -> ServiceSpec {
    ServiceSpec(
        address: ip("192.0.2.10"), port: 80, ipProtocol: IPProtocol.tcp, encapsulation: encapsulation, guePort: 6080,
        backends: backends.map { (ip($0.0), $0.1) })
}

/// The outer destination address of a transmitted IPv4-outer frame.
func outerDestination(_ frame: [UInt8]) -> IPAddress {
    frame.withUnsafeBytes { IPAddress(loadingFrom: $0.baseAddress!, offset: 14 + 16, isV6: false) }
}

func clientFlow(_ i: Int, port: UInt16 = 80) -> [UInt8] {
    Frames.flow(
        source: IPAddress(v4: 0xC633_0000 &+ UInt32(i)), destination: ip("192.0.2.10"),
        sourcePort: UInt16(truncatingIfNeeded: 1024 + i * 7), destinationPort: port)
}

@Suite struct PipelineTests {
    @Test func everyPacketOfAFlowGoesToOneBackend() {
        var sim = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.2", 100), ("10.1.0.3", 100)])])
        for i in 0..<200 {
            let frame = clientFlow(i)
            let (o, first) = sim.run(frame)
            #expect(o == .forwarded)
            for _ in 0..<5 { #expect(outerDestination(sim.run(frame).1!) == outerDestination(first!)) }
        }
    }

    @Test func newFlowsSpreadOverBackendsByWeight() {
        let weights = [("10.1.0.1", 100), ("10.1.0.2", 200), ("10.1.0.3", 100), ("10.1.0.4", 0)]
        var sim = makeSimulator([web(weights)])
        var counts: [IPAddress: Int] = [:]
        let flows = 40000
        for i in 0..<flows { counts[outerDestination(sim.run(clientFlow(i)).1!), default: 0] += 1 }
        #expect(counts[ip("10.1.0.4")] == nil)
        for (address, weight) in weights.prefix(3) {
            let share = Double(counts[ip(address)] ?? 0) / Double(flows)
            #expect(abs(share - Double(weight) / 400) < 0.02, "\(address): \(share)")
        }
    }

    @Test func distinctSourcePortsOfOneClientAreSpreadToo() {
        var sim = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.2", 100)])])
        var seen = Set<IPAddress>()
        for port in 0..<64 {
            let f = Frames.flow(
                source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: UInt16(2000 + port), destinationPort: 80)
            seen.insert(outerDestination(sim.run(f).1!))
        }
        #expect(seen.count == 2)
    }

    @Test func establishedFlowsKeepTheirBackendAcrossASnapshotThatStillHasIt() {
        var sim = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.2", 100)])])
        var before: [IPAddress] = []
        for i in 0..<300 { before.append(outerDestination(sim.run(clientFlow(i)).1!)) }
        // New snapshot: a third backend joins (shifting Maglev slots); the flow table must win.
        var next = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.2", 100), ("10.1.0.0", 100)])], generation: 2)
        swap(&next.worker, &sim.worker)
        var moved = 0
        for i in 0..<300 where outerDestination(next.run(clientFlow(i)).1!) != before[i] { moved += 1 }
        #expect(moved == 0)
        // Flows the old table never saw do reach the new backend.
        var newcomers = 0
        for i in 1000..<1300 where outerDestination(next.run(clientFlow(i)).1!) == ip("10.1.0.0") { newcomers += 1 }
        #expect(newcomers > 50)
    }

    @Test func flowsKeepTheirBackendWhenTheGenerationWouldHaveWrappedSixteenBits() {
        var sim = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.2", 100)])], generation: 1)
        var before: [IPAddress] = []
        for i in 0..<300 { before.append(outerDestination(sim.run(clientFlow(i)).1!)) }
        // 65536 reloads later the same backends come in the other order: every remembered slot now
        // names the other backend, and only the generation says the entries are stale.
        var next = makeSimulator([web([("10.1.0.2", 100), ("10.1.0.1", 100)])], generation: 1 + 65536)
        swap(&next.worker, &sim.worker)
        var moved = 0
        for i in 0..<300 where outerDestination(next.run(clientFlow(i)).1!) != before[i] { moved += 1 }
        #expect(moved == 0)
    }

    @Test func flowsOfARemovedBackendMoveAndDrainedBackendsKeepTheirs() {
        var sim = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.2", 100), ("10.1.0.3", 100)])])
        var before: [IPAddress] = []
        for i in 0..<600 { before.append(outerDestination(sim.run(clientFlow(i)).1!)) }
        // 10.1.0.2 removed, 10.1.0.3 drained (weight 0).
        var next = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.3", 0)])], generation: 2)
        swap(&next.worker, &sim.worker)
        for i in 0..<600 {
            let now = outerDestination(next.run(clientFlow(i)).1!)
            switch before[i] {
            case ip("10.1.0.2"): #expect(now == ip("10.1.0.1"))
            default: #expect(now == before[i])
            }
        }
        for i in 5000..<5200 { #expect(outerDestination(next.run(clientFlow(i)).1!) == ip("10.1.0.1")) }
    }

    @Test func aVIPWithOnlyDrainedBackendsDropsNewFlows() {
        var sim = makeSimulator([web([("10.1.0.1", 0)])])
        #expect(sim.run(clientFlow(1)).0 == .dropNoBackend)
        #expect(sim.worker.counters[.dropNoBackend] == 1)
    }

    @Test func aFullFlowTableEvictsAndStillForwards() {
        var sim = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.2", 100)])], flows: 1024)
        for i in 0..<5000 { #expect(sim.run(clientFlow(i)).0 == .forwarded) }
        #expect(sim.worker.flows.counters.evicted > 0)
        #expect(sim.worker.flows.counters.inserted == 5000)
    }

    @Test func tooBigWithDontFragmentIsAnsweredWithFragmentationNeeded() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])], mtu: 1280)
        let fits = Frames.flow(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 1, destinationPort: 80,
            payload: [UInt8](repeating: 0, count: 1280 - 20 - 40))
        #expect(sim.run(fits).0 == .forwarded)
        let big = Frames.flow(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 1, destinationPort: 80,
            payload: [UInt8](repeating: 7, count: 1280 - 20 - 40 + 1))
        let (outcome, reply) = sim.run(big)
        #expect(outcome == .repliedTooBig)
        guard let r = reply else { return }
        // Ethernet back to the gateway, IPv4 from the VIP to the client, 576 bytes in all.
        #expect(Array(r[0..<6]) == [0x02, 0, 0, 0, 0, 0xFE] && r[12] == 0x08 && r[13] == 0x00)
        #expect(r.count == 14 + 576 && Int(r[16]) << 8 | Int(r[17]) == 576 && r[23] == IPProtocol.icmp)
        #expect(Array(r[26..<30]) == [192, 0, 2, 10] && Array(r[30..<34]) == [198, 51, 100, 1])
        #expect(Checksum.compute(r.withUnsafeBytes { $0.baseAddress! } + 14, length: 20) == 0)
        // ICMP type 3 code 4, next-hop MTU 1280 - 20, valid checksum, the packet quoted from its IP header.
        #expect(r[34] == 3 && r[35] == 4 && Int(r[40]) << 8 | Int(r[41]) == 1260)
        #expect(Checksum.compute(r.withUnsafeBytes { $0.baseAddress! } + 34, length: 576 - 20) == 0)
        #expect(Array(r[42...]) == Array(big[14..<(14 + 576 - 28)]))
    }

    @Test func tooBigIPv6IsAnsweredWithPacketTooBig() {
        let service = ServiceSpec(
            address: ip("2001:db8::10"), port: 80, ipProtocol: IPProtocol.tcp, encapsulation: .ipip, guePort: 0,
            backends: [(ip("fc00::1"), 100)])
        var sim = makeSimulator([service], mtu: 1400)
        let big = Frames.flow(
            source: ip("2001:db8:1::7"), destination: ip("2001:db8::10"), sourcePort: 1, destinationPort: 80,
            payload: [UInt8](repeating: 9, count: 1400 - 40 - 40 - 20 + 1))
        let (outcome, reply) = sim.run(big)
        #expect(outcome == .repliedTooBig)
        guard let r = reply else { return }
        #expect(r.count == 14 + 1280 && r[12] == 0x86 && r[13] == 0xDD && r[20] == IPProtocol.icmpv6 && r[21] == 64)
        #expect(Array(r[22..<38]) == ip("2001:db8::10").bytes && Array(r[38..<54]) == ip("2001:db8:1::7").bytes)
        // Type 2 code 0, MTU 1400 - 40, checksum over the pseudo-header, quote from the IPv6 header.
        #expect(r[54] == 2 && r[55] == 0 && Array(r[58..<62]) == [0, 0, 0x05, 0x50])
        let pseudo = Checksum.sum(of: ip("2001:db8::10")) &+ Checksum.sum(of: ip("2001:db8:1::7")) &+ 1240 &+ 58
        #expect(Checksum.finish(r.withUnsafeBytes { Checksum.add($0.baseAddress! + 54, length: 1240, to: pseudo) }) == 0)
        #expect(Array(r[62...]) == Array(big[14..<(14 + 1232)]))
    }

    /// An ICMP error from a router (not a VIP's client) about a packet the VIP sent to `client`.
    func icmpError(v6: Bool, vip: String, client: String, vipPort: UInt16, clientPort: UInt16) -> [UInt8] {
        let tcp = Frames.tcp(source: ip(vip), destination: ip(client), sourcePort: vipPort, destinationPort: clientPort)
        if v6 {
            let quoted = Frames.ipv6(source: ip(vip), destination: ip(client), nextHeader: IPProtocol.tcp, payload: tcp)
            let message: [UInt8] = [2, 0, 0, 0, 0, 0, 0x05, 0x78] + quoted
            return Frames.ethernet(
                Frames.ipv6(source: ip("2001:db8:ff::1"), destination: ip(vip), nextHeader: IPProtocol.icmpv6, payload: message),
                etherType: EtherType.ipv6)
        }
        let quoted = Frames.ipv4(source: ip(vip), destination: ip(client), protocol: IPProtocol.tcp, payload: tcp)
        let message: [UInt8] = [3, 4, 0, 0, 0, 0, 0x05, 0x78] + Array(quoted.prefix(28))
        return Frames.ethernet(
            Frames.ipv4(source: ip("203.0.113.1"), destination: ip(vip), protocol: IPProtocol.icmp, payload: message),
            etherType: EtherType.ipv4)
    }

    @Test func icmpErrorsAboutAVIPsPacketsGoToTheBackendOfThatFlow() {
        let v6 = ServiceSpec(
            address: ip("2001:db8::10"), port: 443, ipProtocol: IPProtocol.tcp, encapsulation: .ipip, guePort: 0,
            backends: (1...8).map { (ip("fc00::\($0)"), 100) })
        var sim = makeSimulator([web((1...8).map { ("10.1.0.\($0)", 100) }), v6])
        for i in 0..<50 {
            let client = "198.51.100.\(i + 1)"
            let flow = Frames.flow(
                source: ip(client), destination: ip("192.0.2.10"), sourcePort: UInt16(2000 + i), destinationPort: 80)
            let backend = outerDestination(sim.run(flow).1!)
            let error = icmpError(v6: false, vip: "192.0.2.10", client: client, vipPort: 80, clientPort: UInt16(2000 + i))
            let (outcome, out) = sim.run(error)
            #expect(outcome == .forwarded && outerDestination(out!) == backend)
            #expect(Array(out![34...]) == Array(error[14...]))  // the ICMP packet, carried whole
        }
        for i in 0..<50 {
            let client = "2001:db8:1::\(i + 1)"
            let flow = Frames.flow(
                source: ip(client), destination: ip("2001:db8::10"), sourcePort: UInt16(3000 + i), destinationPort: 443)
            let backend = sim.run(flow).1!.withUnsafeBytes {
                IPAddress(loadingFrom: $0.baseAddress!, offset: 14 + 24, isV6: true)
            }
            let (outcome, out) = sim.run(
                icmpError(v6: true, vip: "2001:db8::10", client: client, vipPort: 443, clientPort: UInt16(3000 + i)))
            #expect(outcome == .forwarded)
            #expect(out!.withUnsafeBytes { IPAddress(loadingFrom: $0.baseAddress!, offset: 14 + 24, isV6: true) } == backend)
        }
    }

    @Test func icmpErrorsNotAboutAVIPsFlowAreDropped() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])])
        // Quoting a packet from another address, or from the VIP's address on a port no VIP serves.
        #expect(sim.run(icmpError(v6: false, vip: "192.0.2.99", client: "198.51.100.1", vipPort: 80, clientPort: 1)).0 == .host)
        var other = icmpError(v6: false, vip: "192.0.2.10", client: "198.51.100.1", vipPort: 80, clientPort: 1)
        other[14 + 20 + 8 + 12 + 3] = 11  // quoted source 192.0.2.11
        #expect(sim.run(other).0 == .dropICMPUnsupported)
        #expect(
            sim.run(icmpError(v6: false, vip: "192.0.2.10", client: "198.51.100.1", vipPort: 8080, clientPort: 1)).0
                == .dropICMPUnsupported)
        // Quoted header cut short before the ports.
        let cut = Array(
            icmpError(v6: false, vip: "192.0.2.10", client: "198.51.100.1", vipPort: 80, clientPort: 1).prefix(14 + 20 + 8 + 22))
        var fixed = cut
        fixed[16] = 0
        fixed[17] = UInt8(20 + 8 + 22)  // IPv4 total length matching the cut frame (checksum is not checked)
        #expect(sim.run(fixed).0 == .dropICMPUnsupported)
    }

    /// Without DF: toward an IPv4 tunnel, outer fragments (each within the MTU, reassembling to the
    /// whole encapsulated packet); toward an IPv6 tunnel, dropped `too_big`.
    @Test func tooBigWithoutDontFragmentLeavesInOuterFragmentsOverIPv4() {
        let tcp = Frames.tcp(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 1, destinationPort: 80,
            payload: [UInt8](repeating: 0, count: 1280 - 20 - 40 + 1))
        let inner = Frames.ipv4(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), protocol: IPProtocol.tcp, payload: tcp, dontFragment: false
        )
        let big = Frames.ethernet(inner, etherType: EtherType.ipv4)
        var sim = makeSimulator([web([("10.1.0.1", 100)])], mtu: 1280)
        let (o, whole) = sim.run(big)
        #expect(o == .forwardedInFragments && sim.worker.counters.forwarded == 1)
        let parts = sim.frames(o, whole!)
        #expect(parts.count == 2 && parts.allSatisfy { $0.count <= 14 + 1280 })
        // Offsets and MF, then the payloads joined again: the whole outer payload (the inner packet).
        #expect(parts.map { UInt16($0[20]) << 8 | UInt16($0[21]) } == [0x2000, UInt16((1280 - 20) / 8)])
        #expect(parts.flatMap { $0[34...] } == inner)
        #expect(parts.allSatisfy { Checksum.compute($0.withUnsafeBytes { $0.baseAddress! + 14 }, length: 20) == 0 })
        var v6 = makeSimulator([web([("fc00::1", 100)])], mtu: 1280)
        #expect(v6.run(big).0 == .dropTooBig && v6.worker.counters[.dropTooBig] == 1)
    }

    @Test func tooBigRepliesAreLimitedPerWorkerPerSecond() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])], mtu: 1280)
        let big = Frames.flow(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 1, destinationPort: 80,
            payload: [UInt8](repeating: 0, count: 1300))
        let limit = Int(Worker.icmpRepliesPerSecond)
        for _ in 0..<limit { #expect(sim.run(big, timestampNanoseconds: 1_000_000_000).0 == .repliedTooBig) }
        #expect(sim.run(big, timestampNanoseconds: 1_500_000_000).0 == .dropICMPBudget)
        #expect(sim.run(big, timestampNanoseconds: 2_000_000_000).0 == .repliedTooBig)
        #expect(sim.worker.counters[.repliedTooBig] == UInt64(limit) + 1 && sim.worker.counters[.dropICMPBudget] == 1)
    }

    /// `[icmp] echo_per_second`: pings over the worker's budget in one second are dropped
    /// `icmp_budget`; the next second answers again, also after the port was set anew (as the
    /// worker loop does every burst).
    @Test func echoRepliesAreLimitedPerWorkerPerSecond() {
        var sim = makeSimulatorWithEchoBudget(3)
        let ping = echoRequest(from: ip("198.51.100.1"), to: ip("192.0.2.10"))
        let first = (0..<5).map { _ in sim.run(ping, timestampNanoseconds: 1_000_000_000).0 }
        #expect(first == [.replied, .replied, .replied, .dropICMPBudget, .dropICMPBudget])
        sim.worker.port = PortContext(mac: ours, gatewayMAC: gateway, mtu: 1500)
        #expect(sim.run(ping, timestampNanoseconds: 2_000_000_000).0 == .replied)
        #expect(sim.worker.counters[.replied] == 4 && sim.worker.counters[.dropICMPBudget] == 2)
        var none = makeSimulatorWithEchoBudget(0)
        #expect(none.run(ping).0 == .dropICMPBudget)
    }

    /// The budget is `[icmp] too_big_per_second`: 0 answers none.
    @Test func aTooBigBudgetOfZeroAnswersNone() {
        let spec = SnapshotSpec(
            services: [web([("10.1.0.1", 100)])], tableSize: 1009, tunnelSourceV4: ip("10.0.0.10"), tunnelSourceV6: nil)
        let worker = Worker(
            index: 0, port: PortContext(mac: ours, gatewayMAC: gateway, mtu: 1500),
            settings: WorkerSettings(
                flowTableEntries: 1024, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10, tooBigRepliesPerSecond: 0)
        )
        var sim = Simulator(snapshot: ForwardingSnapshot(spec, generation: 1), worker: worker)
        let big = Frames.flow(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 1, destinationPort: 80,
            payload: [UInt8](repeating: 0, count: 1480))
        #expect(sim.run(big, timestampNanoseconds: 8_000_000_000).0 == .dropICMPBudget)
        #expect(
            sim.run(echoRequest(from: ip("198.51.100.1"), to: ip("192.0.2.10")), timestampNanoseconds: 8_000_000_000).0
                == .replied)
    }

    @Test func packetsWithoutHeadroomAreDroppedNotOverrun() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])])
        var frame = clientFlow(1)
        frame.withUnsafeMutableBytes { raw in
            var packet = Packet(data: raw.baseAddress!, length: raw.count, headroom: 0)
            var outcome = Outcome.forwarded
            sim.runBurst(&packet, count: 1, outcomes: &outcome)
            #expect(outcome == .dropNoHeadroom)
        }
    }

    @Test func rxEqualsTheSumOfVerdicts() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])])
        for i in 0..<100 { _ = sim.run(clientFlow(i, port: UInt16(78 + i % 4))) }
        _ = sim.run([1, 2, 3])
        let c = sim.worker.counters
        #expect(c.received == 101)
        #expect(c[.forwarded] == 25 && c[.dropNoService] == 75 && c[.dropMalformed] == 1)
    }

    /// Outcomes index counter storage by raw value, unchecked: the raw values are 0..<n, the
    /// reading tuple has exactly n words, and the block has a slot for each.
    @Test func everyOutcomeHasAWordInTheCountersAndASlotInTheBlock() {
        #expect(Outcome.allCases.map { Int($0.rawValue) } == Array(0..<Outcome.allCases.count))
        #expect(OutcomeCounters.capacity == Outcome.allCases.count)
        #expect(Outcome.allCases.count <= CounterSlot.outcomeSlots)
    }

    /// Stage 1 writes a record per packet and stage 2 reads it back: one cache line each, in an
    /// array that starts on a line.
    @Test func aClassifiedRecordFillsOneCacheLineAndTheBurstsRecordsStartOnOne() {
        #expect(MemoryLayout<Classified>.size == 64 && MemoryLayout<Classified>.stride == 64)
        let sim = makeSimulator([web([("10.1.0.1", 100)])])
        #expect(UInt(bitPattern: sim.worker.classified) % 64 == 0)
    }
}
