// Runs frames held in Swift arrays through one worker's pipeline, one at a time and in order: what
// `ternctl simulate`, the tests and the fuzzer use. Not the packet path itself (it copies).

import TernBalancing
import TernWire

public struct Simulator: ~Copyable {
    /// Room in front of each frame, as a DPDK mbuf has (RTE_PKTMBUF_HEADROOM).
    public static let headroom = 128

    public var worker: Worker
    public let snapshot: ForwardingSnapshot
    var buffer: UnsafeMutableRawPointer
    var bufferSize: Int
    var startNanoseconds: UInt64? = nil
    var now: UInt32 = 1

    public init(snapshot: consuming ForwardingSnapshot, worker: consuming Worker) {
        self.snapshot = snapshot
        self.worker = worker
        bufferSize = 16384
        buffer = .allocate(byteCount: bufferSize, alignment: 64)
    }

    deinit { buffer.deallocate() }

    /// Flow-table time from capture timestamps: whole seconds since the first frame, plus one.
    mutating func advanceClock(to nanoseconds: UInt64) {
        let start = startNanoseconds ?? nanoseconds
        startNanoseconds = start
        if nanoseconds > start {
            now = max(now, UInt32(truncatingIfNeeded: (nanoseconds - start) / 1_000_000_000) &+ 1)
        }
    }

    /// Runs one frame; returns its outcome and, for `forwarded` and `replied`, the frame to transmit.
    public mutating func run(_ frame: [UInt8], timestampNanoseconds: UInt64 = 0) -> (Outcome, [UInt8]?) {
        advanceClock(to: timestampNanoseconds)
        if frame.count + Simulator.headroom > bufferSize {
            buffer.deallocate()
            bufferSize = frame.count + Simulator.headroom
            buffer = .allocate(byteCount: bufferSize, alignment: 64)
        }
        let data = buffer + Simulator.headroom
        frame.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        var packet = Packet(data: data, length: frame.count, headroom: Simulator.headroom)
        let outcome = worker.process(&packet, snapshot: snapshot, now: now)
        guard outcome.transmits else { return (outcome, nil) }
        return (outcome, Array(UnsafeRawBufferPointer(start: packet.data, count: packet.length)))
    }

    /// Runs a burst of packets in place, as a worker loop does (the fuzzer's way into `processBurst`).
    public mutating func runBurst(_ packets: UnsafeMutablePointer<Packet>, count: Int, outcomes: UnsafeMutablePointer<Outcome>) {
        worker.processBurst(packets, count: count, outcomes: outcomes, snapshot: snapshot, now: now)
    }

    /// The frames a transmitted packet leaves as: itself, or its outer fragments
    /// (`forwardedInFragments`, cut at the port's MTU as ternd's worker loop cuts them).
    public func frames(_ outcome: Outcome, _ frame: [UInt8]) -> [[UInt8]] {
        guard outcome == .forwardedInFragments else { return [frame] }
        var whole = frame
        let mtu = worker.port.mtu
        return whole.withUnsafeMutableBytes { raw -> [[UInt8]] in
            let p = raw.baseAddress!
            let n = OuterFragments.count(p, length: frame.count, mtu: mtu)
            return (0..<n).map { k in
                [UInt8](unsafeUninitializedCapacity: OuterFragments.largestFrame(mtu: mtu)) { buffer, count in
                    count = OuterFragments.write(k, of: p, length: frame.count, mtu: mtu, to: buffer.baseAddress!)
                }
            }
        }
    }
}
