import CFastPath
import TernTestSupport
import Testing

@testable import TernBalancing
@testable import TernWire

func tuple(_ i: Int, proto: UInt8 = IPProtocol.tcp) -> FiveTuple {
    FiveTuple(
        source: IPAddress(v4: 0xC633_6400 + UInt32(i)), destination: IPAddress("192.0.2.10")!,
        sourcePort: UInt16(truncatingIfNeeded: 1000 + i), destinationPort: 80, ipProtocol: proto)
}

let backendA = IPAddress("10.1.0.1")!

@Suite struct FlowTableTests {
    @Test func findsWhatItRemembers() {
        var table = FlowTable(capacity: 1024, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10)
        for i in 0..<500 {
            let t = tuple(i)
            let h = FlowHash.hash(t)
            let p = table.probe(t, hash: h, now: 1)
            #expect(!p.found)
            table.insert(t, at: p, hash: FlowHash.hash(t), backend: backendA, slot: UInt16(i % 7), generation: 3, now: 1)
        }
        // Flows may be evicted from a full bucket: every flow still in the table is found with what
        // was stored, and the ones found are exactly the ones not evicted (none evicted at this load).
        var found = 0
        for i in 0..<500 {
            let t = tuple(i)
            let p = table.probe(t, hash: FlowHash.hash(t), now: 2)
            guard p.found else { continue }
            found += 1
            #expect(table.entries[p.index].backendSlot == UInt16(i % 7))
            #expect(table.entries[p.index].backendAddress == backendA)
        }
        #expect(found == 500 - Int(table.counters.evicted))
        #expect(found > 490)
        #expect(table.liveCount(now: 2) == found)
    }

    /// An IPv6 backend is remembered as one (a reload finds it again by address), and a flow that
    /// differs from a remembered one in a single key word is not that flow.
    @Test func remembersTheBackendsFamilyAndMatchesEveryKeyWord() {
        var table = FlowTable(capacity: 1024, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10)
        let t = FiveTuple(
            source: IPAddress("2001:db8:1::1")!, destination: IPAddress("2001:db8::10")!, sourcePort: 40000, destinationPort: 443,
            ipProtocol: IPProtocol.tcp)
        let backend = IPAddress("fc00::1")!
        let p = table.probe(t, hash: 7, now: 1)
        table.insert(t, at: p, hash: 7, backend: backend, slot: 0, generation: 1, now: 1)
        let found = table.probe(t, hash: 7, now: 2)
        #expect(found.found && table.entries[found.index].backendAddress == backend && backend.isV6)
        var others = [t, t, t, t, t]
        others[0].sourceHigh ^= 1
        others[1].sourceLow ^= 1
        others[2].destinationHigh ^= 1
        others[3].destinationLow ^= 1
        others[4].portsAndProtocol ^= 1 << 16
        // The same hash (same bucket and tag): only the key words tell them apart.
        for o in others { #expect(!table.probe(o, hash: 7, now: 2).found) }
    }

    /// The worker's survey (tern_flow_table_entries) counts what a whole walk counts, a few buckets
    /// a step, and starts over after each pass; flows idled out are not counted.
    @Test func surveyCountsLiveFlowsInStepsAndStartsOver() {
        var table = FlowTable(capacity: 1024, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10)
        for i in 0..<300 {
            let t = tuple(i, proto: i % 3 == 0 ? IPProtocol.udp : IPProtocol.tcp)
            let h = FlowHash.hash(t)
            table.insert(t, at: table.probe(t, hash: h, now: 1), hash: h, backend: backendA, slot: 0, generation: 1, now: 1)
        }
        func pass(now: UInt32) -> (count: Int, steps: Int) {
            for step in 1...1000 {
                if let n = table.survey(step: 5, now: now) { return (n, step) }
            }
            return (-1, 0)
        }
        let first = pass(now: 2)
        #expect(first.count == table.liveCount(now: 2) && first.count == 300)
        #expect(first.steps == (1024 / FlowTable.ways + 4) / 5)
        // After UDP's 30 s only the TCP flows are live.
        #expect(pass(now: 40).count == 200)
    }

    @Test func forgetsTCPAndUDPFlowsAfterTheirOwnIdleTimeouts() {
        var table = FlowTable(capacity: 64, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10)
        let tcp = tuple(1)
        let udp = tuple(2, proto: IPProtocol.udp)
        for t in [tcp, udp] {
            let p = table.probe(t, hash: FlowHash.hash(t), now: 10)
            table.insert(t, at: p, hash: FlowHash.hash(t), backend: backendA, slot: 0, generation: 1, now: 10)
        }
        #expect(table.probe(udp, hash: FlowHash.hash(udp), now: 40).found)
        #expect(!table.probe(udp, hash: FlowHash.hash(udp), now: 41).found)
        #expect(table.probe(tcp, hash: FlowHash.hash(tcp), now: 310).found)
        #expect(!table.probe(tcp, hash: FlowHash.hash(tcp), now: 311).found)
        #expect(table.counters.expired == 2)
    }

    @Test func evictsTheLeastRecentlySeenFlowWhenTheBucketIsFull() {
        // Capacity 8 = one bucket: the ninth flow must evict the least recently seen.
        var table = FlowTable(capacity: 8, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10)
        for i in 0..<8 {
            let t = tuple(i)
            let p = table.probe(t, hash: FlowHash.hash(t), now: UInt32(10 + i))
            #expect(!p.evicts)
            table.insert(t, at: p, hash: FlowHash.hash(t), backend: backendA, slot: 0, generation: 1, now: UInt32(10 + i))
        }
        let newcomer = tuple(100)
        let p = table.probe(newcomer, hash: FlowHash.hash(newcomer), now: 20)
        #expect(p.evicts)
        table.insert(newcomer, at: p, hash: FlowHash.hash(newcomer), backend: backendA, slot: 0, generation: 1, now: 20)
        #expect(table.counters.evicted == 1)
        #expect(!table.probe(tuple(0), hash: FlowHash.hash(tuple(0)), now: 20).found)
        for i in 1..<8 { #expect(table.probe(tuple(i), hash: FlowHash.hash(tuple(i)), now: 20).found) }
    }

    @Test func reusesAnExpiredEntryOfTheSameFlowInsteadOfDuplicatingIt() {
        var table = FlowTable(capacity: 8, tcpIdleTimeout: 5, udpIdleTimeout: 5, tcpClosingTimeout: 5)
        let t = tuple(1)
        let first = table.probe(t, hash: FlowHash.hash(t), now: 1)
        table.insert(t, at: first, hash: FlowHash.hash(t), backend: backendA, slot: 0, generation: 1, now: 1)
        let again = table.probe(t, hash: FlowHash.hash(t), now: 100)
        #expect(!again.found && again.index == first.index)
    }

    /// The hint stage 2's prefetch gives settles a live flow without tags (and touches it), and
    /// says "not here" for anything else: no hint, an idled-out flow, and another flow that took
    /// the hinted way after the hint was given (an insert earlier in the burst).
    @Test func aHintFindsOnlyTheLiveFlowStillAtItsWay() {
        var table = FlowTable(capacity: 64, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10)
        let x = tuple(1, proto: IPProtocol.udp)
        let y = tuple(2, proto: IPProtocol.udp)
        #expect(table.prefetchEntry(hash: 7, now: 1) == 0)
        let p = table.probe(x, hash: 7, now: 1)
        table.insert(x, at: p, hash: 7, backend: backendA, slot: 3, generation: 1, now: 1)
        let hint = table.prefetchEntry(hash: 7, now: 2)
        #expect(hint & FlowTable.hinted != 0)
        #expect(table.liveEntry(x, hash: 7, hint: hint, now: 2) == p.index)
        #expect(table.liveEntry(x, hash: 7, hint: 0, now: 2) == -1)
        // Touched at 25, so still live at 50 (30 s UDP timeout); 81 is past it.
        #expect(table.liveEntry(x, hash: 7, hint: hint, now: 25) == p.index)
        #expect(table.liveEntry(x, hash: 7, hint: hint, now: 50) == p.index)
        #expect(table.liveEntry(x, hash: 7, hint: hint, now: 81) == -1)
        #expect(!table.probe(x, hash: 7, now: 81).found)
        // y takes x's way (same bucket and tag); x's old hint now finds y, not x.
        table.insert(y, at: p, hash: 7, backend: backendA, slot: 4, generation: 1, now: 90)
        #expect(table.liveEntry(x, hash: 7, hint: hint, now: 91) == -1)
        #expect(table.liveEntry(y, hash: 7, hint: hint, now: 91) == p.index)
        #expect(!table.probe(x, hash: 7, now: 91).found)
    }

    /// The eight-way SIMD choice of a full bucket's way against the loop it replaced: the first
    /// idled-out way, else the least recently seen (first of equals), over random times, classes
    /// (upper bits set too), timeouts and clock wrap-around.
    @Test func replacementWayAgreesWithTheLoopOverTheWays() {
        var rng = SplitMix(seed: 8)
        var dead = 0
        var evicted = 0
        for round in 0..<20_000 {
            let now = round % 3 == 0 ? UInt32.random(in: 0...20, using: &rng) : UInt32.random(in: 0...UInt32.max, using: &rng)
            let timeouts = (0..<4).map { _ in UInt32.random(in: 0...(round % 2 == 0 ? 50 : UInt32.max), using: &rng) }
            let seen = (0..<8).map { _ in
                round % 5 == 0 ? UInt32.random(in: 0...3, using: &rng) : now &- UInt32.random(in: 0...60, using: &rng)
            }
            let classes = (0..<8).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var expected = (way: 0, evicts: true)
            var oldest = UInt32.max
            for w in 0..<8 {
                if now &- seen[w] > timeouts[Int(classes[w] & 3)] {
                    expected = (w, false)
                    break
                }
                if seen[w] < oldest {
                    oldest = seen[w]
                    expected.way = w
                }
            }
            let r = seen.withUnsafeBytes { s in
                classes.withUnsafeBytes { c in
                    timeouts.withUnsafeBufferPointer { t in
                        tern_replacement_way(s.baseAddress!, c.baseAddress!, t.baseAddress!, now)
                    }
                }
            }
            #expect(
                Int(r & 0xFF) == expected.way && (r & 0x100 != 0) == expected.evicts,
                "seen \(seen) classes \(classes) timeouts \(timeouts) now \(now)")
            if expected.evicts { evicted += 1 } else { dead += 1 }
        }
        #expect(dead > 1000 && evicted > 1000, "idled out \(dead), evictions \(evicted)")
    }

    @Test func entriesAreOneCacheLine() {
        #expect(MemoryLayout<FlowEntry>.size == 64 && MemoryLayout<FlowEntry>.stride == 64)
    }
}
