import Testing

@testable import TernBalancing
@testable import TernDataplane
@testable import TernTestSupport
@testable import TernWire

/// A packet of flow `i` (the same 5-tuple as `clientFlow(i)`) with the given TCP flags.
func segment(_ i: Int, _ flags: UInt8) -> [UInt8] {
    Frames.flow(
        source: IPAddress(v4: 0xC633_0000 &+ UInt32(i)), destination: ip("192.0.2.10"),
        sourcePort: UInt16(truncatingIfNeeded: 1024 + i * 7), destinationPort: 80, tcpFlags: flags)
}

@Suite struct ConnectionSemanticsTests {
    /// A client that reuses a source port opens a new connection with a SYN: it must not follow
    /// the old connection's entry to a drained backend. The old connection's own packets (ACKs)
    /// still reach its backend.
    @Test func aSYNOnARememberedFiveTupleTakesAFreshDecisionAndAvoidsADrainedBackend() {
        var sim = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.2", 100)])])
        var on1: [Int] = []
        for i in 0..<200 where outerDestination(sim.run(segment(i, TCPFlag.syn)).1!) == ip("10.1.0.1") { on1.append(i) }
        #expect(!on1.isEmpty)
        var next = makeSimulator([web([("10.1.0.1", 0), ("10.1.0.2", 100)])], generation: 2)
        swap(&next.worker, &sim.worker)
        for i in on1 {
            #expect(outerDestination(next.run(segment(i, TCPFlag.ack)).1!) == ip("10.1.0.1"))
            #expect(outerDestination(next.run(segment(i, TCPFlag.syn)).1!) == ip("10.1.0.2"))
            // The SYN replaced the entry: the new connection's packets stay on the live backend.
            #expect(outerDestination(next.run(segment(i, TCPFlag.ack)).1!) == ip("10.1.0.2"))
        }
        // A SYN+ACK is not a new connection: it follows the table.
        let kept = next.worker.flows.counters.inserted
        _ = next.run(segment(on1[0], TCPFlag.syn | TCPFlag.ack))
        #expect(next.worker.flows.counters.inserted == kept)
    }

    /// A burst holding several packets of a flow the table does not know yet: the first places
    /// it, the others find it (their prefetch saw no entry; the lookup must not trust that), so the
    /// table holds one entry and all go to one backend. A flow placed earlier keeps its backend.
    @Test func packetsOfANewFlowInOneBurstMakeOneEntry() {
        var sim = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.2", 100)])])
        let known = outerDestination(sim.run(segment(9, TCPFlag.syn)).1!)
        let burst = [segment(1, TCPFlag.syn), segment(1, TCPFlag.ack), segment(9, TCPFlag.ack), segment(1, TCPFlag.ack)]
        let results = sim.runBurst(burst)
        #expect(results.allSatisfy { $0.0 == .forwarded })
        #expect(sim.worker.flows.counters.inserted == 2)
        #expect(Set([0, 1, 3].map { outerDestination(results[$0].1!) }).count == 1)
        #expect(outerDestination(results[2].1!) == known)
    }

    /// After FIN or RST a flow lives `tcp_closing_timeout_s` (here 10 s) after its last packet
    /// instead of the 300 s idle timeout.
    @Test func finAndRstShortenAFlowsLifeToTheClosingTimeout() {
        var sim = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.2", 100)])])
        let second: UInt64 = 1_000_000_000
        for (i, flags) in [(1, TCPFlag.fin | TCPFlag.ack), (2, TCPFlag.rst), (3, TCPFlag.ack)] {
            _ = sim.run(segment(i, TCPFlag.syn), timestampNanoseconds: 0)
            _ = sim.run(segment(i, flags), timestampNanoseconds: second)
        }
        let inserted = sim.worker.flows.counters.inserted
        // 12 s later (> 10 s closing, < 300 s idle): the closed flows are new again, the open one is known.
        for i in 1...3 { _ = sim.run(segment(i, TCPFlag.ack), timestampNanoseconds: 13 * second) }
        #expect(sim.worker.flows.counters.inserted == inserted + 2)
        #expect(sim.worker.flows.counters.expired == 2)
    }

    /// A flow's packets keep it alive: its idle timeout (300 s) counts from its last packet, so a
    /// flow with a packet every 200 s is never forgotten, and one silent for 301 s is.
    @Test func eachPacketRestartsItsFlowsIdleTimeout() {
        var sim = makeSimulator([web([("10.1.0.1", 100), ("10.1.0.2", 100)])])
        let second: UInt64 = 1_000_000_000
        _ = sim.run(segment(1, TCPFlag.syn), timestampNanoseconds: second)
        for t in stride(from: 201, through: 1001, by: 200) {
            _ = sim.run(segment(1, TCPFlag.ack), timestampNanoseconds: UInt64(t) * second)
        }
        #expect(sim.worker.flows.counters.inserted == 1 && sim.worker.flows.counters.expired == 0)
        _ = sim.run(segment(1, TCPFlag.ack), timestampNanoseconds: 1302 * second)
        #expect(sim.worker.flows.counters.inserted == 2 && sim.worker.flows.counters.expired == 1)
    }
}
