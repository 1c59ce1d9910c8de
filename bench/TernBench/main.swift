// Tern's benchmark driver (first part): Maglev build time and the pipeline alone over preloaded
// frames. Run `make bench-quick` or `swift run -c release TernBench [maglev|pipeline] ...`.
// Reports wall-clock figures only; timed assertions do not belong in tests.

import TernBalancing
import TernDataplane
import TernTestSupport
import TernWire

#if canImport(Glibc)
import Glibc
#endif

func nanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

/// Maglev build time for M slots and N backends of equal weight (median of `runs`).
func benchMaglev(m: Int, n: Int, runs: Int = 11) {
    let backends = (0..<n).map { (address: IPAddress(v4: 0x0A00_0000 + UInt32($0)), weight: 100) }
    let table = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: m)
    defer { table.deallocate() }
    var times: [Double] = []
    for _ in 0..<runs {
        let t0 = nanoseconds()
        Maglev.build(backends: backends, into: table)
        times.append(Double(nanoseconds() - t0) / 1e6)
    }
    print("maglev build M=\(m) N=\(n): median \(format1(median(times))) ms (min \(format1(times.min()!)) ms, \(runs) runs)")
}

func format1(_ x: Double) -> String {
    let t = Int((x * 100).rounded())
    return "\(t / 100).\(t % 100 < 10 ? "0" : "")\(t % 100)"
}

/// The pipeline alone: `flows` TCP flows to one VIP with 100 backends, `packets` 64-byte frames
/// round-robin over the flows, preloaded; each pass re-copies nothing (frames are re-encapsulated
/// from a pristine copy kept beside each buffer).
func benchPipeline(flows: Int, passes: Int) {
    let vip = IPAddress("192.0.2.10")!
    let backends = (0..<100).map { (address: IPAddress(v4: 0x0A01_0000 + UInt32($0)), weight: 100) }
    let spec = SnapshotSpec(
        services: [ServiceSpec(address: vip, port: 80, ipProtocol: IPProtocol.tcp, encapsulation: .ipip, backends: backends)],
        tableSize: 65537, tunnelSourceV4: IPAddress("10.0.0.10"), tunnelSourceV6: nil)
    let snapshot = ForwardingSnapshot(spec, generation: 1)
    var worker = Worker(
        index: 0, port: PortContext(mac: Frames.ourMAC, gatewayMAC: Frames.routerMAC, mtu: 1500),
        flowTableEntries: max(1024, flows * 2), tcpIdleTimeout: 300, udpIdleTimeout: 30)
    let slot = 256
    let headroom = 128
    let arena = UnsafeMutableRawPointer.allocate(byteCount: flows * slot, alignment: 64)
    defer { arena.deallocate() }
    var length = 0
    for i in 0..<flows {
        let f = Frames.flow(
            source: IPAddress(v4: 0xC600_0000 &+ UInt32(i)), destination: vip, sourcePort: UInt16(truncatingIfNeeded: i &* 7 &+ 1024),
            destinationPort: 80)
        length = f.count
        f.withUnsafeBytes { (arena + i * slot + headroom).copyMemory(from: $0.baseAddress!, byteCount: f.count) }
    }
    var packets = [Packet](repeating: Packet(data: arena, length: 0, headroom: 0), count: 32)
    var outcomes = [Outcome](repeating: .host, count: 32)
    var best = Double.infinity
    for pass in 0..<passes {
        let t0 = nanoseconds()
        var i = 0
        while i < flows {
            let n = min(32, flows - i)
            for k in 0..<n {
                packets[k] = Packet(data: arena + (i + k) * slot + headroom, length: length, headroom: headroom)
            }
            packets.withUnsafeMutableBufferPointer { p in
                outcomes.withUnsafeMutableBufferPointer { o in
                    worker.processBurst(p.baseAddress!, count: n, outcomes: o.baseAddress!, snapshot: snapshot, now: 1)
                }
            }
            // Undo the encapsulation in place so the next pass sees the original frame again.
            for k in 0..<n where outcomes[k] == .forwarded {
                let inner = packets[k].data + 34
                let original = arena + (i + k) * slot + headroom
                (original + 14).copyMemory(from: inner, byteCount: length - 14)
                Frames.ourMAC.store(to: original, offset: 0)
                Frames.routerMAC.store(to: original, offset: 6)
                original.storeBE16(EtherType.ipv4, at: 12)
            }
            i += n
        }
        let ns = Double(nanoseconds() - t0) / Double(flows)
        if pass > 0 { best = min(best, ns) }  // pass 0 inserts the flows
    }
    print("pipeline tcp-established \(flows) flows, 64-byte frames: best \(format1(best)) ns/packet over \(passes - 1) passes "
        + "(includes restoring each frame); forwarded \(worker.counters[.forwarded])")
}

let args = Array(CommandLine.arguments.dropFirst())
switch args.first ?? "all" {
case "maglev":
    benchMaglev(m: 65537, n: 1000)
case "pipeline":
    benchPipeline(flows: Int(args.dropFirst().first ?? "") ?? 100_000, passes: 6)
default:
    benchMaglev(m: 65537, n: 1000)
    benchMaglev(m: 65537, n: 100)
    benchPipeline(flows: 10_000, passes: 6)
    benchPipeline(flows: 1_000_000, passes: 4)
}
