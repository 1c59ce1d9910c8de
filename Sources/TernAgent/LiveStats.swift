// The counters of a running data plane, read while it runs: every worker's block (outcomes, flow
// table, I/O) and the packets per VIP and backend (snapshots already retired, plus the current
// one). One report for `ternctl stats`, the final JSON line at exit and later renderers.
//
// Consistency: each counter is read whole (relaxed atomic loads), but not all at one instant. A
// worker counts a burst's outcomes before its `rx_polled` (a release store), and `rx_polled` is
// read first (acquire), so 0 <= rx - rx_polled <= burst_size x workers (packets of bursts in
// flight) in every report; after the workers stopped the two are equal. Per-VIP and per-backend figures are read first, so they never run
// ahead of `forwarded` by more than the packet each worker is finishing.

import TernBalancing
import TernConfig
import TernDataplane
import TernMetrics
import TernTelemetry

public struct LiveStats {
    public let blocks: [CounterBlock]
    public let publisher: Publisher
    /// The host path's block (`HostSlot` layout), when ternd has one.
    public let host: CounterBlock?

    public init(blocks: [CounterBlock], publisher: Publisher, host: CounterBlock? = nil) {
        self.blocks = blocks
        self.publisher = publisher
        self.host = host
    }

    /// The host path's counters (empty without one): `host_tx` frames handed to the kernel,
    /// `host_rx` frames the kernel sent that went out on the data port (a TX queue that refuses
    /// them counts them in `tx_failed`), `host_dropped` host-bound frames lost (a worker's ring
    /// full, or the TAP refused them), `host_rx_dropped` kernel frames lost on the way to worker 0.
    public var hostCounters: [(String, UInt64)] {
        guard let host else { return [] }
        let ringFull = blocks.reduce(0) { $0 + $1.load(CounterSlot.hostDropped) }
        let sent = blocks.reduce(0) { $0 + $1.load(CounterSlot.hostRx) }
        return [
            ("host_tx", host.load(HostSlot.toKernel)), ("host_rx", sent),
            ("host_dropped", ringFull + host.load(HostSlot.toKernelFailed)),
            ("host_rx_dropped", host.load(HostSlot.fromKernelDropped)),
        ]
    }

    /// The report now; `extra` and `extraObjects` are appended (mbufs, reloads, ...).
    public func report(extra: [(String, UInt64)] = [], extraObjects: [(String, [(String, UInt64)])] = []) -> TrafficReport {
        let totals = publisher.totals()
        var outcomes = OutcomeCounters()
        var flows = FlowTableCounters()
        // rx_polled before the outcomes: read the other way, a burst finished between the two
        // reads would be in rx_polled but not in rx (seen by the control-socket test).
        let rx = blocks.reduce(0) { $0 + $1.loadAcquiring(CounterSlot.rx) }
        var tx: UInt64 = 0
        var txFailed: UInt64 = 0
        for b in blocks {
            outcomes = outcomes + OutcomeCounters(reading: b)
            flows = flows + FlowTableCounters(reading: b)
            tx += b.load(CounterSlot.tx)
            txFailed += b.load(CounterSlot.txFailed)
        }
        return TrafficReport(
            outcomes: outcomes, totals: totals, flows: flows,
            extra: [
                ("rx_polled", rx), ("tx", tx), ("tx_failed", txFailed), ("workers", UInt64(blocks.count)),
            ] + CounterSlot.features.map { f in (f.name, blocks.reduce(0) { $0 + $1.load(f.slot) }) } + hostCounters
                + extra,
            extraObjects: extraObjects)
    }
}
