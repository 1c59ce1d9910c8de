// Reload build time: a config of many VIPs, one VIP's weights changed, the next snapshot built
// from the running one's tables as ternd's Publisher builds it (stable counter ids assigned, then
// ForwardingSnapshot reusing the table cache). Issue 15's target: 1,000 VIPs x 100 backends
// under 10 ms.

import TernBalancing
import TernWire

/// Median ms of `rounds` rebuilds after a one-VIP change, split into counter-id assignment and the
/// snapshot build.
func benchReload(vips: Int, backends: Int, rounds: Int = 5) -> (assign: Double, build: Double) {
    func spec(weightOfFirst: Int) -> SnapshotSpec {
        SnapshotSpec(
            services: (0..<vips).map { v in
                ServiceSpec(
                    address: IPAddress(v4: 0xC000_0200 &+ UInt32(v)), port: 80, ipProtocol: IPProtocol.tcp, encapsulation: .ipip,
                    backends: (0..<backends).map { b in
                        (IPAddress(v4: 0x0A00_0000 &+ UInt32(v) << 8 &+ UInt32(b)), v == 0 ? weightOfFirst : 100)
                    })
            }, tableSize: 65537, tunnelSourceV4: IPAddress(v4: 0x0A00_000A), tunnelSourceV6: nil)
    }
    var ids = CounterIDs()
    var running = ForwardingSnapshot(ids.assign(spec(weightOfFirst: 100)), generation: 1)
    var assign: [Double] = []
    var build: [Double] = []
    for round in 0..<rounds {
        let next = spec(weightOfFirst: 50 + round)
        let t0 = monotonicNanoseconds()
        let assigned = ids.assign(next)
        let t1 = monotonicNanoseconds()
        let snapshot = withUnsafePointer(to: running) { previous in
            ForwardingSnapshot(assigned, generation: UInt32(round + 2), workers: 1, previous: previous, shouldStop: { false })!
        }
        let t2 = monotonicNanoseconds()
        assign.append(Double(t1 - t0) / 1e6)
        build.append(Double(t2 - t1) / 1e6)
        running = snapshot
    }
    return (assign.sorted()[rounds / 2], build.sorted()[rounds / 2])
}
