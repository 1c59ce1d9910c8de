// The ceilings Tern's worker loop is compared to in the benchmark: the same RX/TX bursts on the same
// ports with the packet work replaced by nothing (io) or by a MAC swap (as testpmd's io and macswap
// forwarding modes do). Not used by ternd.

import CDPDK
import Synchronization
import TernDPDK

public final class BaselineLoop: LcoreTask, @unchecked Sendable {
    public enum Mode: String, Sendable { case io, macswap }

    let port: UInt16
    let mode: Mode
    let burst: Int
    let stop = Atomic<Bool>(false)
    public private(set) var forwarded: UInt64 = 0

    public init(port: UInt16, mode: Mode, burst: Int = 32) {
        self.port = port
        self.mode = mode
        self.burst = burst
    }

    public func requestStop() { stop.store(true, ordering: .releasing) }

    public func run() {
        let mbufs = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: burst)
        defer { mbufs.deallocate() }
        var forwarded: UInt64 = 0
        while !stop.load(ordering: .acquiring) {
            let n = Int(tern_rx_burst(port, 0, mbufs, UInt16(burst)))
            if n == 0 { continue }
            if mode == .macswap { for i in 0..<n { tern_swap_macs(mbufs[i]) } }
            let sent = Int(tern_tx_burst(port, 0, mbufs, UInt16(n)))
            if sent < n { tern_mbuf_free_bulk(mbufs + sent, UInt32(n - sent)) }
            forwarded &+= UInt64(sent)
        }
        self.forwarded = forwarded
    }
}
