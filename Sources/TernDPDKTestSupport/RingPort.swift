// A port backed by two rings (`rte_eth_from_rings`): its RX queue is a ring someone else fills and
// its TX queue a ring someone else drains. Tests and the benchmark use it as a virtual device whose
// other end is in the same process, so no file or socket sits in the measured path.

import CDPDK
import TernDPDK

public final class RingPort: @unchecked Sendable {
    public let rx: OpaquePointer
    public let tx: OpaquePointer
    public let port: Port

    /// Creates rings `<name>_rx` and `<name>_tx` and the port `net_ring_<name>` over them
    /// (`rte_ring_create`, `rte_eth_from_rings`).
    public init(_ name: String, rxSize: UInt32 = 1024, txSize: UInt32 = 1024) throws(DPDKError) {
        let flags = UInt32(RING_F_SP_ENQ | RING_F_SC_DEQ)
        guard let rx = rte_ring_create("\(name)_rx", rxSize, EAL.socketID, flags),
            let tx = rte_ring_create("\(name)_tx", txSize, EAL.socketID, flags)
        else { throw DPDKError("rte_ring_create(\(name))", code: tern_errno()) }
        var rxs: OpaquePointer? = rx
        var txs: OpaquePointer? = tx
        guard rte_eth_from_rings(name, &rxs, 1, &txs, 1, 0) >= 0 else {
            throw DPDKError("rte_eth_from_rings(\(name))", code: tern_errno())
        }
        self.rx = rx
        self.tx = tx
        port = try Port(named: "net_ring_\(name)")
    }

    /// Copies frames into new mbufs and puts them on the RX ring; returns how many went on.
    public func inject(_ frames: [[UInt8]], pool: Mempool) -> Int {
        var mbufs: [OpaquePointer?] = frames.map { frame in
            let m = tern_mbuf_alloc(pool.pointer)!
            let p = tern_mbuf_append(m, UInt16(frame.count))!
            frame.withUnsafeBytes { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
            return m
        }
        let n = Int(tern_ring_enqueue_burst(rx, &mbufs, UInt32(mbufs.count)))
        for m in mbufs[n...] { tern_mbuf_free(m) }
        return n
    }

    /// Takes every frame off the TX ring, frees the mbufs, returns the bytes.
    public func drain() -> [[UInt8]] {
        var out: [[UInt8]] = []
        var mbufs = [OpaquePointer?](repeating: nil, count: 64)
        while true {
            let n = Int(tern_ring_dequeue_burst(tx, &mbufs, 64))
            if n == 0 { return out }
            for m in mbufs[0..<n] {
                out.append(Array(UnsafeRawBufferPointer(start: tern_mbuf_data(m), count: Int(tern_mbuf_data_len(m)))))
                tern_mbuf_free(m)
            }
        }
    }
}
