// `pipeline` mode: the packet path alone, in one thread, over frames preloaded in memory. Only the
// processBurst calls are timed; putting frames back between passes is not.

import TernBalancing
import TernDataplane
import TernTestSupport
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

struct PipelineResult {
    var nsPerPacket: Double
    var forwarded: UInt64
    var packets: UInt64
}

/// The call callgrind counts (`--toggle-collect=*benchBurst*`): one burst through the pipeline.
@inline(never)
func benchBurst(
    _ worker: inout Worker, _ packets: UnsafeMutablePointer<Packet>, _ n: Int, _ outcomes: UnsafeMutablePointer<Outcome>,
    _ snapshot: borrowing ForwardingSnapshot
) {
    worker.processBurst(packets, count: n, outcomes: outcomes, snapshot: snapshot, now: 1)
}

func runPipeline(_ s: Scenario, arena: FrameArena, passes: Int, burst: Int = 32) -> PipelineResult {
    let snapshot = ForwardingSnapshot(s.spec, generation: 1)
    var worker = Worker(
        index: 0, port: PortContext(mac: Frames.ourMAC, gatewayMAC: Frames.routerMAC, mtu: Scenario.backendMTU),
        settings: WorkerSettings(
            flowTableEntries: s.flowTableEntries, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10))
    let packets = UnsafeMutablePointer<Packet>.allocate(capacity: burst)
    let outcomes = UnsafeMutablePointer<Outcome>.allocate(capacity: burst)
    defer {
        packets.deallocate()
        outcomes.deallocate()
    }
    var best = Double.infinity
    // Pass 0 warms up (and, for established flows, inserts them); it is not counted.
    for pass in 0...passes {
        if s.newFlowsEachPass { arena.renewSources(pass: pass + 1) }
        var elapsed: UInt64 = 0
        var i = 0
        while i < arena.count {
            let n = min(burst, arena.count - i)
            for k in 0..<n {
                packets[k] = Packet(data: arena.frame(i + k), length: arena.lengths[i + k], headroom: Scenario.headroom)
            }
            let t0 = monotonicNanoseconds()
            benchBurst(&worker, packets, n, outcomes, snapshot)
            elapsed += monotonicNanoseconds() - t0
            for k in 0..<n { arena.restore(i + k) }
            i += n
        }
        if pass > 0 { best = min(best, Double(elapsed) / Double(arena.count)) }
    }
    return PipelineResult(nsPerPacket: best, forwarded: worker.counters[.forwarded], packets: worker.counters.received)
}
