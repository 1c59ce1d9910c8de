// The benchmark's traffic source on the other side of a RingPort: keeps a fixed set of mbufs in
// circulation, putting each back on the RX ring after the loop under test transmitted it. Before
// a frame goes out again its first 14 bytes and its data offset and length are restored (the
// pipeline only rewrites bytes in front of the IP header), and a flow number is written into its
// source address and port, so few mbufs carry many flows. A TSC stamp in each mbuf's private area
// gives the latency through the loop.

import CDPDK
import TernDPDK

public struct FeedTemplate: Sendable {
    public var frame: [UInt8]
    /// Where the 4 bytes of the flow number go (the low bytes of the source address) and the 2
    /// bytes of the source port.
    public var sourceOffset: Int
    public var portOffset: Int

    public init(frame: [UInt8], sourceOffset: Int, portOffset: Int) {
        self.frame = frame
        self.sourceOffset = sourceOffset
        self.portOffset = portOffset
    }
}

public struct FeedResult: Sendable {
    public var offered: UInt64 = 0
    /// Frames the RX ring had no room for (the loop under test fell behind): lost.
    public var lost: UInt64 = 0
    public var received: UInt64 = 0
    public var seconds: Double = 0
    public var receivedMpps: Double { seconds > 0 ? Double(received) / seconds / 1e6 : 0 }
    public var lossRatio: Double { offered > 0 ? Double(lost) / Double(offered) : 0 }
}

public final class RingFeeder: @unchecked Sendable {
    /// Per-mbuf private area: template index, then the TSC when it was offered.
    static let privateSize: UInt16 = 16

    let ring: RingPort
    let pool: Mempool
    let templates: [FeedTemplate]
    /// Distinct flows per template (0: a new flow for every packet).
    let flowsPerTemplate: UInt32
    /// The next flow number of each template.
    let nextFlow: UnsafeMutablePointer<UInt32>
    /// Mbufs waiting to be offered.
    let ready: UnsafeMutablePointer<OpaquePointer?>
    var readyCount = 0
    let capacity: Int
    /// Latency samples in TSC ticks (every 16th packet), up to `samples.count`.
    public let samples: UnsafeMutableBufferPointer<UInt64>
    public private(set) var sampleCount = 0

    public static func makePool(name: String, mbufs: Int, dataRoom: UInt16) throws(DPDKError) -> Mempool {
        try Mempool(name: name, count: UInt32(mbufs), cache: 0, dataRoom: dataRoom, privateSize: privateSize)
    }

    /// `flows` distinct flows in all, spread evenly over the templates (0: every packet a new flow).
    public init(ring: RingPort, pool: Mempool, templates: [FeedTemplate], flows: Int, inFlight: Int) throws(DPDKError) {
        self.ring = ring
        self.pool = pool
        self.templates = templates
        flowsPerTemplate = flows == 0 ? 0 : UInt32(truncatingIfNeeded: max(1, flows / templates.count))
        nextFlow = .allocate(capacity: templates.count)
        nextFlow.initialize(repeating: 0, count: templates.count)
        capacity = inFlight
        ready = .allocate(capacity: inFlight)
        samples = .allocate(capacity: 1 << 20)
        for i in 0..<inFlight {
            guard let m = tern_mbuf_alloc(pool.pointer) else { throw DPDKError("mbuf pool too small for \(inFlight) in flight") }
            let t = i % templates.count
            let frame = templates[t].frame
            let p = tern_mbuf_append(m, UInt16(frame.count))!
            frame.withUnsafeBytes { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: frame.count) }
            tern_mbuf_priv(m)!.storeBytes(of: UInt64(t), as: UInt64.self)
            ready[i] = m
        }
        readyCount = inFlight
    }

    deinit {
        // Whatever is still in the rings or the ready list goes back to the pool.
        _ = collect(record: false)
        tern_mbuf_free_bulk(ready, UInt32(readyCount))
        ready.deallocate()
        samples.deallocate()
        nextFlow.deallocate()
    }

    /// Writes the next flow number and the time and restores the frame's start.
    @inline(__always)
    func prepare(_ m: OpaquePointer?, now: UInt64) {
        let priv = tern_mbuf_priv(m)!
        let t = Int(priv.load(as: UInt64.self))
        let template = templates[t]
        tern_mbuf_reframe(m, UInt16(RTE_PKTMBUF_HEADROOM), UInt16(template.frame.count))
        let data = tern_mbuf_data(m)!
        template.frame.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: 14) }
        let n = nextFlow[t]
        nextFlow[t] = n &+ 1
        let flow = flowsPerTemplate == 0 ? n : n % flowsPerTemplate
        data.storeBytes(of: flow.bigEndian, toByteOffset: template.sourceOffset, as: UInt32.self)
        data.storeBytes(
            of: UInt16(truncatingIfNeeded: flow >> 16 ^ flow).bigEndian, toByteOffset: template.portOffset, as: UInt16.self)
        priv.storeBytes(of: now, toByteOffset: 8, as: UInt64.self)
    }

    /// Moves what the loop under test transmitted back to the ready list; returns how many.
    @inline(__always)
    func collect(record: Bool) -> Int {
        var got = 0
        while readyCount < capacity {
            let n = Int(tern_ring_dequeue_burst(ring.tx, ready + readyCount, UInt32(min(64, capacity - readyCount))))
            if n == 0 { break }
            if record {
                let now = tern_tsc()
                for k in 0..<n where (readyCount + k) & 15 == 0 && sampleCount < samples.count {
                    let sent = tern_mbuf_priv(ready[readyCount + k])!.load(fromByteOffset: 8, as: UInt64.self)
                    samples[sampleCount] = now &- sent
                    sampleCount += 1
                }
            }
            readyCount += n
            got += n
        }
        return got
    }

    /// Offers traffic for `seconds`, as fast as the ring takes it (`mpps` nil) or paced at `mpps`.
    public func run(seconds: Double, mpps: Double? = nil, recordLatency: Bool = false, burst: Int = 32) -> FeedResult {
        let hz = Double(EAL.tscHz)
        let start = tern_tsc()
        let end = start &+ UInt64(seconds * hz)
        let ticksPerPacket = mpps.map { hz / ($0 * 1e6) } ?? 0
        var result = FeedResult()
        var due = Double(start)
        sampleCount = 0
        var now = start
        while now < end {
            result.received &+= UInt64(collect(record: recordLatency))
            now = tern_tsc()
            var n = min(burst, readyCount)
            if ticksPerPacket > 0 {
                // A generator that fell behind (the VM took the core away) does not catch up in one
                // burst of thousands: that would measure the ring size, not the loop under test.
                due = max(due, Double(now) - Double(2 * burst) * ticksPerPacket)
                let allowed = Int((Double(now) - due) / ticksPerPacket)
                if allowed <= 0 { continue }
                n = min(n, allowed)
            }
            if n == 0 { continue }
            let first = readyCount - n
            for k in first..<readyCount { prepare(ready[k], now: now) }
            let taken = Int(tern_ring_enqueue_burst(ring.rx, ready + first, UInt32(n)))
            result.offered &+= UInt64(n)
            if ticksPerPacket > 0 {
                due += Double(n) * ticksPerPacket
                // Refused frames are lost, as on a NIC whose RX ring is full (they stay ready).
                result.lost &+= UInt64(n - taken)
            } else {
                result.offered &-= UInt64(n - taken)  // unpaced: refused frames are simply offered again
            }
            for k in 0..<(n - taken) { ready[first + k] = ready[first + taken + k] }
            readyCount = first + (n - taken)
        }
        // Let the loop finish what it holds, then count it.
        let drainEnd = tern_tsc() &+ UInt64(0.05 * hz)
        while tern_tsc() < drainEnd { result.received &+= UInt64(collect(record: false)) }
        result.seconds = seconds
        return result
    }
}
