// Second chance on the load balancer: each VIP keeps the Maglev table of its backends before their
// last change; a TCP packet without SYN of a flow the node does not know, which that table gave
// another backend, is sent to today's backend with the previous one as a second hop (GUE private
// data, `SecondHop`). Flows in the table and SYNs never carry one.

import TernMetrics
import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernTestSupport
@testable import TernWire

func gueWeb(_ backends: [(String, Int)], secondChance: Bool = true) -> ServiceSpec {
    var s = web(backends, encapsulation: .gue)
    s.secondChance = secondChance
    return s
}

func spec(_ services: [ServiceSpec]) -> SnapshotSpec {
    SnapshotSpec(services: services, tableSize: 65537, tunnelSourceV4: ip("10.0.0.10"), tunnelSourceV6: ip("fc00::10"))
}

/// The snapshot of `services` built after `previous` (as a reload publishes it).
func after(_ previous: borrowing ForwardingSnapshot, _ services: [ServiceSpec], generation: UInt32) -> ForwardingSnapshot {
    withUnsafePointer(to: previous) { p in
        ForwardingSnapshot(spec(services), generation: generation, previous: p, shouldStop: { false })!
    }
}

/// Maglev's backend for `hash` in a snapshot's VIP 0.
func pick(_ s: borrowing ForwardingSnapshot, _ hash: UInt64) -> IPAddress {
    s.backends[s.vips[0].firstBackend + Int(s.maglevSlot(vip: 0, hash: hash))].address
}

/// A simulator on `snapshot`, its worker as `makeSimulator` makes it.
func simulator(_ snapshot: consuming ForwardingSnapshot) -> Simulator {
    let worker = Worker(
        index: 0, port: PortContext(mac: ours, gatewayMAC: gateway, mtu: 1500),
        settings: WorkerSettings(flowTableEntries: 1 << 16, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10))
    return Simulator(snapshot: snapshot, worker: worker)
}

let hashes = (0..<2000).map { UInt64($0) &* 0x9E37_79B9_7F4A_7C15 }

@Suite struct SecondChanceTests {
    @Test func theVIPKeepsTheTableOfItsBackendsBeforeTheirLastChange() {
        let two = [("10.1.0.1", 100), ("10.1.0.2", 100)]
        let three = two + [("10.1.0.3", 100)]
        let a = ForwardingSnapshot(spec([gueWeb(two)]), generation: 1)
        #expect(a.previousBackend(vip: 0, hash: 1) == nil)  // nothing before the first
        let b = after(a, [gueWeb(three)], generation: 2)  // a backend added
        #expect(hashes.allSatisfy { b.previousBackend(vip: 0, hash: $0) == pick(a, $0) })
        // A reload that leaves this VIP's backends alone keeps its previous table.
        let other = ServiceSpec(
            address: ip("192.0.2.11"), port: 80, ipProtocol: IPProtocol.tcp, encapsulation: .gue, guePort: 6080,
            backends: [(ip("10.1.0.9"), 100)])
        let c = after(b, [gueWeb(three), other], generation: 3)
        #expect(hashes.allSatisfy { c.previousBackend(vip: 0, hash: $0) == pick(a, $0) })
        // A drain (weight 0) is a change: the previous table becomes the one with three live backends.
        let d = after(c, [gueWeb([("10.1.0.1", 0), ("10.1.0.2", 100), ("10.1.0.3", 100)]), other], generation: 4)
        #expect(hashes.allSatisfy { d.previousBackend(vip: 0, hash: $0) == pick(c, $0) })
        // A backend down (it leaves the spec) likewise.
        let e = after(d, [gueWeb([("10.1.0.1", 0), ("10.1.0.3", 100)]), other], generation: 5)
        #expect(hashes.allSatisfy { e.previousBackend(vip: 0, hash: $0) == pick(d, $0) })
        // Off for the VIP: none, though the table is kept for when it is turned on.
        let f = after(e, [gueWeb([("10.1.0.1", 0), ("10.1.0.3", 100)], secondChance: false), other], generation: 6)
        #expect(f.previousBackend(vip: 0, hash: 1) == nil && f.previousTables.count == 1)
    }

    @Test func aFlowTheNodeDidNotKnowCarriesTheBackendThePreviousTableGaveIt() throws {
        let two = [("10.1.0.1", 100), ("10.1.0.2", 100)]
        let a = ForwardingSnapshot(spec([gueWeb(two)]), generation: 1)
        var sim = simulator(after(a, [gueWeb(two + [("10.1.0.3", 100)])], generation: 2))
        var carried = 0
        var plain = 0
        for i in 0..<300 {
            let packet = segment(i, TCPFlag.ack)
            let (o, out) = sim.run(packet)
            let frame = try #require(out)
            #expect(o == .forwarded)
            let hop = SecondChanceTests.hop(frame)
            let inner = Array(packet.dropFirst(14))
            if let hop {
                carried += 1
                #expect(hop != outerDestination(frame), "flow \(i): a hop to its own backend")
                #expect(Array(frame.suffix(inner.count)) == inner && frame.count == 14 + 20 + 8 + 4 + 8 + inner.count)
                #expect(SecondChanceTests.wellFormed(frame), "flow \(i): lengths or checksum")
                // Its later packets carry it too, though the flow is in the table now.
                #expect(SecondChanceTests.hop(sim.run(segment(i, TCPFlag.ack)).1!) == hop)
            } else {
                plain += 1
                #expect(frame.count == 14 + 20 + 8 + 4 + inner.count && frame[42] == 0 && frame[45] & 1 == 0)
            }
        }
        // A third of the flows moved when a third backend came (Maglev's minimal disruption).
        #expect(carried > 50 && plain > 150, "carried \(carried), plain \(plain)")
        #expect(sim.worker.stats.load(CounterSlot.secondHop) >= UInt64(2 * carried))
    }

    @Test func synsAndFlowsTheTableKnowsNeverCarryAHop() throws {
        let two = [("10.1.0.1", 100), ("10.1.0.2", 100)]
        let a = ForwardingSnapshot(spec([gueWeb(two)]), generation: 1)
        var sim = simulator(after(a, [gueWeb(two + [("10.1.0.3", 100)])], generation: 2))
        for i in 0..<300 {
            #expect(SecondChanceTests.hop(try #require(sim.run(segment(i, TCPFlag.syn)).1)) == nil)
            #expect(SecondChanceTests.hop(try #require(sim.run(segment(i, TCPFlag.ack)).1)) == nil)
        }
        #expect(sim.worker.stats.load(CounterSlot.secondHop) == 0)
        // IP in IP has no room for a hop.
        var ipip = simulator(
            after(ForwardingSnapshot(spec([web(two)]), generation: 1), [web(two + [("10.1.0.3", 100)])], generation: 2))
        for i in 0..<100 { _ = ipip.run(segment(i, TCPFlag.ack)) }
        #expect(ipip.worker.stats.load(CounterSlot.secondHop) == 0)
    }

    /// The hop a GUE-over-IPv4 frame carries in Tern's private data, or nil.
    static func hop(_ frame: [UInt8]) -> IPAddress? {
        let gue = 14 + 20 + 8
        guard frame.count > gue + 12, frame[gue + 3] & 1 == 1, frame[gue] & 0x1F == 2 else { return nil }
        guard Array(frame[(gue + 4)..<(gue + 8)]) == [SecondHop.magic, SecondHop.version, 4, 1] else { return nil }
        return frame.withUnsafeBytes { IPAddress(loadingFrom: $0.baseAddress!, offset: gue + 8, isV6: false) }
    }

    /// Outer IPv4 total length and checksum, UDP length, as the frame is.
    static func wellFormed(_ frame: [UInt8]) -> Bool {
        frame.withUnsafeBytes { p in
            let ip = p.baseAddress! + 14
            let total = Int(ip.be16(2))
            let udpLength = Int(ip.be16(20 + 4))
            return total == frame.count - 14 && udpLength == total - 20 && Checksum.fold(Checksum.add(ip, length: 20)) == 0xFFFF
        }
    }
}
