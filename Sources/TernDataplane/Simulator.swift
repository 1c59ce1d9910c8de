// Runs frames held in Swift arrays through one worker's pipeline, one at a time and in order, or as
// bursts: what `ternctl simulate`, the tests and the fuzzer use. Every frame enters the pipeline as
// ternd's do, through `Worker.processBurst` (a single frame is a burst of one), so established flows
// take the same hinted path as under ternd. Not the packet path itself (it copies).

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
    /// Copies of the fragments the pipeline holds (`FragmentTable`), by handle.
    var heldFrames: [UInt: [UInt8]] = [:]
    var nextHandle: UInt = 1
    /// What held fragments became when their first passed, not yet taken (`takeReleased`).
    var released: [(Outcome, [UInt8]?)] = []
    let handles = UnsafeMutablePointer<UInt>.allocate(capacity: FragmentTable.heldCapacity)
    /// A burst of one: the packet and outcome `runOne` hands to `processBurst`.
    let onePacket = UnsafeMutablePointer<Packet>.allocate(capacity: 1)
    let oneOutcome = UnsafeMutablePointer<Outcome>.allocate(capacity: 1)

    public init(snapshot: consuming ForwardingSnapshot, worker: consuming Worker) {
        self.snapshot = snapshot
        self.worker = worker
        bufferSize = 16384
        buffer = .allocate(byteCount: bufferSize, alignment: 64)
    }

    deinit {
        buffer.deallocate()
        handles.deallocate()
        onePacket.deallocate()
        oneOutcome.deallocate()
    }

    /// Flow-table time from capture timestamps: whole seconds since the first frame, plus one.
    mutating func advanceClock(to nanoseconds: UInt64) {
        let start = startNanoseconds ?? nanoseconds
        startNanoseconds = start
        if nanoseconds > start {
            now = max(now, UInt32(truncatingIfNeeded: (nanoseconds - start) / 1_000_000_000) &+ 1)
        }
    }

    /// Runs one frame; returns its outcome and, for `forwarded` and `replied`, the frame to transmit.
    /// A fragment ahead of its first is `held`: when a later frame's first fragment lets it go, its
    /// outcome and frame come from `takeReleased` after that frame's.
    public mutating func run(_ frame: [UInt8], timestampNanoseconds: UInt64 = 0) -> (Outcome, [UInt8]?) {
        advanceClock(to: timestampNanoseconds)
        if worker.fragments.pointee.heldCount > 0 { dropHeld(worker.fragments.pointee.takeExpired(now: now, into: handles)) }
        let result = runOne(frame)
        if result.0 == .held {
            let handle = nextHandle
            nextHandle += 1
            if frame.withUnsafeBytes({ worker.fragments.pointee.hold(frame: $0.baseAddress!, length: $0.count, handle: handle) })
            {
                heldFrames[handle] = frame
            }
        }
        if worker.fragments.pointee.heldCount > 0 {
            let k = worker.fragments.pointee.takeReleased(into: handles)
            for j in 0..<k {
                if let copy = heldFrames.removeValue(forKey: handles[j]) { released.append(runOne(copy)) }
            }
        }
        return result
    }

    /// The outcomes and frames of held fragments let go since the last call, in the order they
    /// arrived.
    public mutating func takeReleased() -> [(Outcome, [UInt8]?)] {
        defer { released = [] }
        return released
    }

    /// Gives up every fragment still held (counted `fragment_timeout`), as ternd does when it stops.
    public mutating func finish() { dropHeld(worker.fragments.pointee.takeExpired(now: now, all: true, into: handles)) }

    mutating func dropHeld(_ k: Int) {
        for j in 0..<k { heldFrames[handles[j]] = nil }
    }

    mutating func runOne(_ frame: [UInt8]) -> (Outcome, [UInt8]?) {
        if frame.count + Simulator.headroom > bufferSize {
            buffer.deallocate()
            bufferSize = frame.count + Simulator.headroom
            buffer = .allocate(byteCount: bufferSize, alignment: 64)
        }
        let data = buffer + Simulator.headroom
        frame.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        onePacket.initialize(to: Packet(data: data, length: frame.count, headroom: Simulator.headroom))
        runBurst(onePacket, count: 1, outcomes: oneOutcome)
        let outcome = oneOutcome.pointee
        guard outcome.transmits else { return (outcome, nil) }
        return (outcome, Array(UnsafeRawBufferPointer(start: onePacket.pointee.data, count: onePacket.pointee.length)))
    }

    /// Runs `frames` as one burst through `processBurst`; their outcomes and, for `forwarded` and
    /// `replied`, the frames to transmit, in order.
    public mutating func runBurst(_ frames: [[UInt8]]) -> [(Outcome, [UInt8]?)] {
        let room = Simulator.headroom
        let buffers = frames.map { frame in
            let b = UnsafeMutableRawPointer.allocate(byteCount: room + frame.count, alignment: 64)
            frame.withUnsafeBytes { (b + room).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            return b
        }
        let packets = UnsafeMutablePointer<Packet>.allocate(capacity: frames.count)
        let outcomes = UnsafeMutablePointer<Outcome>.allocate(capacity: frames.count)
        defer {
            for b in buffers { b.deallocate() }
            packets.deallocate()
            outcomes.deallocate()
        }
        for i in frames.indices { packets[i] = Packet(data: buffers[i] + room, length: frames[i].count, headroom: room) }
        runBurst(packets, count: frames.count, outcomes: outcomes)
        return frames.indices.map { i in
            let sent = UnsafeRawBufferPointer(start: packets[i].data, count: packets[i].length)
            return (outcomes[i], outcomes[i].transmits ? Array(sent) : nil)
        }
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
