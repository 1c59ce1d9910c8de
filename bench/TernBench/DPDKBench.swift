// `dpdk` mode: one worker lcore runs the real WorkerLoop on a ring-backed port; the feeder on the
// main lcore offers preloaded mbufs and recycles what comes out (RingFeeder), so no file I/O is in
// the measured path. In the same run the same harness measures the loop only forwarding (io) or
// swapping MACs (macswap): the ceiling Tern is compared to. For each: the highest output rate when
// offered all it takes (best of 4 short trials, in two rounds interleaved with the other loops, since
// this VM has slow spells lasting seconds), a zero-loss search (binary search on the offered rate, loss at most
// 0.0001%, as in RFC 2544 and LINE's L4LB benchmark), and latency through the loop at that rate.

import Histogram
import TernBalancing
import TernDPDK
import TernDPDKTestSupport
import TernDataplane
import TernTestSupport
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

struct DPDKResult {
    var mpps: Double
    var zeroLossMpps: Double?
    var latencyNanoseconds: (p50: Double, p99: Double, p999: Double)?
    var note: String
}

enum LoopKind: String { case tern, io, macswap }

struct DPDKBench {
    let quick: Bool
    var runs = 0

    static func startEAL() -> Bool {
        let args = [
            "ternbench", "-l", "0-1", "--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "--file-prefix",
            "tern-bench-\(getpid())",
            "--log-level", "lib.eal:error",
        ]
        do {
            _ = try EAL.initialize(args)
            return EAL.workerLcores.count >= 1
        } catch {
            print("EAL: \(error)")
            return false
        }
    }

    /// Frames the feeder cycles, with where it writes flow numbers.
    static func templates(_ s: Scenario) -> [FeedTemplate] {
        let count = s.name.hasPrefix("multi-vip") ? 1000 : s.name.hasPrefix("imix") ? 12 : 1
        return (0..<count).map { i in
            let f = s.frame(i)
            let v6 = f[12] == 0x86
            return FeedTemplate(frame: f, sourceOffset: v6 ? 14 + 8 + 12 : 14 + 12, portOffset: v6 ? 14 + 40 : 14 + 20)
        }
    }

    /// `zeroLoss: false` measures only the maximum (a second round, interleaved with the other loops).
    mutating func measure(_ s: Scenario, kind: LoopKind, zeroLoss: Bool = true) throws -> DPDKResult {
        runs += 1
        let ring = try RingPort("bench\(runs)", rxSize: 1024, txSize: 1024)
        let inFlight = 4096
        let dataRoom: UInt16 = s.slotSize > 256 ? 2048 : 256
        let pool = try RingFeeder.makePool(name: "bench_pool\(runs)", mbufs: inFlight + 2 * 1024 + 512, dataRoom: dataRoom)
        _ = try ring.port.configure(queues: 1, descriptors: 1024, pool: pool)
        try ring.port.start()
        defer {
            ring.port.stopAndClose()
        }
        let feeder = try RingFeeder(
            ring: ring, pool: pool, templates: DPDKBench.templates(s), flows: s.newFlowsEachPass ? 0 : s.flows, inFlight: inFlight
        )
        let lcore = EAL.workerLcores[0]
        var stop: () -> Void
        switch kind {
        case .tern:
            let cell = SnapshotCell(ForwardingSnapshot(s.spec, generation: 1), readers: 1)
            let worker = Worker(
                index: 0, port: PortContext(mac: Frames.ourMAC, gatewayMAC: Frames.routerMAC, mtu: Scenario.backendMTU),
                settings: WorkerSettings(
                    flowTableEntries: s.flowTableEntries, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10))
            let loop = WorkerLoop(
                index: 0,
                queues: [
                    WorkerQueue(
                        rxPort: ring.port.id, queue: 0, backendPort: ring.port.id,
                        context: PortContext(mac: Frames.ourMAC, gatewayMAC: Frames.routerMAC, mtu: Scenario.backendMTU))
                ],
                burstSize: 32, cell: cell, worker: worker)
            try Lcore.launch(loop, on: lcore)
            stop = { loop.requestStop() }
        case .io, .macswap:
            let loop = BaselineLoop(port: ring.port.id, mode: kind == .io ? .io : .macswap)
            try Lcore.launch(loop, on: lcore)
            stop = { loop.requestStop() }
        }
        // Warm up (fills the flow table for established flows), then the unpaced maximum: the best
        // of four short trials, because this VM takes the core away for milliseconds at a time and
        // one long trial would measure that as much as the loop.
        let trial = quick ? 0.2 : 1.0
        _ = feeder.run(seconds: s.newFlowsEachPass ? trial : max(trial, Double(s.flows) / 5e6))
        let max = (0..<4).map { _ in feeder.run(seconds: quick ? 0.1 : 0.5) }.max { $0.receivedMpps < $1.receivedMpps }!
        // Zero-loss search between 0 and the maximum.
        var low = 0.0
        var high = max.receivedMpps * 1.02
        var latency: (Double, Double, Double)? = nil
        let steps = !zeroLoss ? 0 : quick ? 3 : 8
        for _ in 0..<steps {
            let rate = (low + high) / 2
            let r = feeder.run(seconds: trial, mpps: rate, recordLatency: true)
            if r.lost * 1_000_000 <= r.offered {
                low = rate
                latency = percentiles(feeder)
            } else {
                high = rate
            }
        }
        stop()
        Lcore.waitAll()
        return DPDKResult(mpps: max.receivedMpps, zeroLossMpps: low > 0 ? low : nil, latencyNanoseconds: latency, note: "")
    }

    func percentiles(_ feeder: RingFeeder) -> (Double, Double, Double)? {
        guard feeder.sampleCount > 0 else { return nil }
        var h = Histogram<UInt64>(highestTrackableValue: 1 << 40, numberOfSignificantValueDigits: .three)
        for i in 0..<feeder.sampleCount { _ = h.record(feeder.samples[i]) }
        let nsPerTick = 1e9 / Double(EAL.tscHz)
        return (
            Double(h.valueAtPercentile(50)) * nsPerTick, Double(h.valueAtPercentile(99)) * nsPerTick,
            Double(h.valueAtPercentile(99.9)) * nsPerTick
        )
    }
}
