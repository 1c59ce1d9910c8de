import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernTestSupport
@testable import TernWire

func ip(_ s: String) -> IPAddress { IPAddress(s)! }

let gateway = MACAddress(value: 0x02_00_00_00_00_FE)
let ours = MACAddress(value: 0x02_00_00_00_00_01)

func makeSimulator(_ services: [ServiceSpec], generation: UInt16 = 1, mtu: Int = 1500, flows: Int = 1 << 16) -> Simulator {
    let spec = SnapshotSpec(services: services, tableSize: 65537, tunnelSourceV4: ip("10.0.0.10"), tunnelSourceV6: ip("fc00::10"))
    let worker = Worker(
        index: 0, port: PortContext(mac: ours, gatewayMAC: gateway, mtu: mtu), flowTableEntries: flows,
        tcpIdleTimeout: 300, udpIdleTimeout: 30)
    return Simulator(snapshot: ForwardingSnapshot(spec, generation: generation), worker: worker)
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
            let f = Frames.flow(source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: UInt16(2000 + port), destinationPort: 80)
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

    @Test func tooBigAfterEncapsulationIsDroppedAndCounted() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])], mtu: 1280)
        let fits = Frames.flow(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 1, destinationPort: 80,
            payload: [UInt8](repeating: 0, count: 1280 - 20 - 40))
        #expect(sim.run(fits).0 == .forwarded)
        let big = Frames.flow(
            source: ip("198.51.100.1"), destination: ip("192.0.2.10"), sourcePort: 1, destinationPort: 80,
            payload: [UInt8](repeating: 0, count: 1280 - 20 - 40 + 1))
        #expect(sim.run(big).0 == .dropTooBig)
    }

    @Test func packetsWithoutHeadroomAreDroppedNotOverrun() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])])
        var frame = clientFlow(1)
        frame.withUnsafeMutableBytes { raw in
            var packet = Packet(data: raw.baseAddress!, length: raw.count, headroom: 0)
            #expect(sim.worker.process(&packet, snapshot: sim.snapshot, now: 1) == .dropNoHeadroom)
        }
    }

    @Test func rxEqualsTheSumOfVerdicts() {
        var sim = makeSimulator([web([("10.1.0.1", 100)])])
        for i in 0..<100 { _ = sim.run(clientFlow(i, port: UInt16(78 + i % 4))) }
        _ = sim.run([1, 2, 3])
        let c = sim.worker.counters
        #expect(c.received == 101)
        #expect(c[.forwarded] == 25 && c[.dropNoService] == 75 && c[.dropMalformed] == 1)
        #expect(Outcome.allCases.count <= OutcomeCounters.count && OutcomeCounters.count <= 16)
    }
}
