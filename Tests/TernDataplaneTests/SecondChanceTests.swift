// Second chance on the load balancer: each VIP keeps the Maglev table of its backends before their
// last change; a TCP packet without SYN of a flow the node does not know, which that table gave
// another backend, is sent to today's backend with the previous one as a second hop (GUE private
// data, `SecondHop`). Flows in the table and SYNs never carry one.

import Foundation
import TernMetrics
import TernPcap
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

    /// A flow that carries a hop remembers its owner: after a later change it still goes to the
    /// owner (directly, once Maglev picks it again; else by way of today's pick).
    @Test func aFlowKeepsItsOwnerAsTheHopAcrossLaterChanges() throws {
        let two = [("10.1.0.1", 100), ("10.1.0.2", 100)]
        let three = two + [("10.1.0.3", 100)]
        let a = ForwardingSnapshot(spec([gueWeb(two)]), generation: 1)
        let b = after(a, [gueWeb(three)], generation: 2)
        let c = after(b, [gueWeb(two)], generation: 3)  // b3 goes again: the previous table is b's
        var sim = simulator(b)
        var owners: [Int: IPAddress] = [:]
        for i in 0..<200 {
            if let hop = SecondChanceTests.hop(try #require(sim.run(segment(i, TCPFlag.ack)).1)) { owners[i] = hop }
        }
        #expect(!owners.isEmpty)
        var next = simulator(c)
        swap(&next.worker, &sim.worker)
        for (i, owner) in owners {
            let frame = try #require(next.run(segment(i, TCPFlag.ack)).1)
            // a's pick was the owner; c has a's backends, so Maglev picks the owner again: no hop.
            #expect(outerDestination(frame) == owner && SecondChanceTests.hop(frame) == nil, "flow \(i)")
        }
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

    /// From outside: tshark (with the tree's GUE dissector, which skips `hlen` words) decodes the
    /// inner TCP packet behind the hop and finds every checksum good; scapy reads the private data.
    @Test func theHopOnTheWireIsWhatTsharkAndScapyRead() throws {
        let two = [("10.1.0.1", 100), ("10.1.0.2", 100)]
        var sim = simulator(
            after(ForwardingSnapshot(spec([gueWeb(two)]), generation: 1), [gueWeb(two + [("10.1.0.3", 100)])], generation: 2))
        let frames = (0..<100).compactMap { i in sim.run(segment(i, TCPFlag.ack)).1 }.filter { SecondChanceTests.hop($0) != nil }
        #expect(!frames.isEmpty)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tern-second-hop-\(getpid()).pcap").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let writer = try PcapWriter(path: path)
        for f in frames { try writer.append(PcapRecord(timestampNanoseconds: 0, data: f)) }
        try writer.close()
        let here = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let tshark = try run(
            "/usr/bin/tshark",
            [
                "-r", path, "-X", "lua_script:/\(here)/Tests/outside/gue.lua", "-o", "ip.check_checksum:TRUE",
                "-T", "fields", "-E", "separator=;", "-e", "frame.protocols", "-e", "gue.hlen", "-e", "gue.flags", "-e", "ip.dst",
                "-e", "ip.checksum.status", "-e", "tcp.dstport",
            ])
        let lines = tshark.split(separator: "\n")
        #expect(lines.count == frames.count)
        for line in lines {
            let f = line.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
            #expect(f[0] == "eth:ethertype:ip:udp:gue:ip:tcp" && f[1] == "2" && f[2] == "0x0001", "\(line)")
            #expect(f[3].hasSuffix(",192.0.2.10") && f[4] == "1,1" && f[5] == "80", "\(line)")
        }
        let scapy = try run(
            "/usr/bin/python3",
            [
                "-c",
                """
                import sys
                from scapy.all import rdpcap, IP, UDP
                for p in rdpcap(sys.argv[1]):
                    g = bytes(p[UDP].payload)
                    words = g[0] & 0x1f
                    assert g[3] & 1 and g[4:8] == bytes([0x54, 1, 4, 1]), g[:8]
                    inner = IP(g[4 + 4 * words:])
                    assert inner.dst == "192.0.2.10" and IP(bytes(inner)).chksum == inner.chksum
                    print(".".join(str(b) for b in g[8:12]))
                """, path,
            ])
        #expect(scapy.split(separator: "\n").map(String.init) == frames.map { SecondChanceTests.hop($0)!.description })
    }

    /// A program's standard output; throws when it exits non-zero.
    func run(_ program: String, _ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ProcessFailed("\(program) exited \(p.terminationStatus)") }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct ProcessFailed: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
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
