// The one live home for a worker's counters: a block of UInt64 slots on their own cache lines,
// written only by that worker and read by the control thread whenever it likes (stats, metrics)
// while the worker runs. Each slot is an `Atomic<UInt64>`: the single writer adds with a relaxed
// load and a relaxed store (no read-modify-write, no lock prefix: on x86 two plain moves around
// the add), readers use relaxed loads. A reader may see one counter of a burst before another (see
// `CounterSlot`), never a torn or lost value; ThreadSanitizer checks it (CounterBlockTests).

import Synchronization

/// The slots of a worker's block. An enum so that two counters cannot share a slot (a duplicate
/// raw value does not compile); `CounterBlockTests` checks every slot lies past the outcomes and
/// inside the block.
public enum CounterSlot: Int, CaseIterable, Sendable {
    /// Packets per outcome: slot `outcomes + Outcome.rawValue` (`outcomeSlots` of them, room to grow).
    case outcomes = 0
    /// Flow-table events.
    case flowsInserted = 24
    case flowsEvicted = 25
    case flowsExpired = 26
    /// Frames received, transmitted, and refused by the TX queue (freed). Updated once per burst,
    /// after the burst's outcomes: a reader may see up to one burst per worker more verdicts than
    /// `rx`.
    case rx = 27
    case tx = 28
    case txFailed = 29
    /// Host-bound frames dropped because the host path's ring was full (the kernel is not
    /// keeping up; forwarding is not slowed).
    case hostDropped = 30
    /// Frames the kernel sent on a host interface that this worker transmitted on the data port.
    case hostRx = 31
    /// TCP SYNs whose MSS option was lowered (`clamp_mss`).
    case mssClamped = 32
    /// New flows of `quic` VIPs: placed on the backend their connection ID's server id names;
    /// with a server id no backend of the VIP has (Maglev); with none to read (Maglev).
    case quicByServerID = 33
    case quicUnknownServerID = 34
    case quicWithoutServerID = 35
    /// Later IP fragments sent after their datagram's first; first fragments whose entry took a
    /// live one's place in a full bucket of the fragment table.
    case fragmentsFollowed = 36
    case fragmentTableFull = 37
    /// Packets sent carrying a second hop (second chance): of flows this node did not know, which
    /// the VIP's previous table gave another backend.
    case secondHop = 38
    /// A gauge: live flows in the worker's flow table at the end of its last survey (a pass over
    /// the table a few buckets at a time between bursts).
    case flowTableLive = 39

    /// Slots `outcomes` takes.
    public static let outcomeSlots = 24

    /// The per-feature counters as stats, `simulate` and metrics (`tern_NAME_total`) name them.
    public static let features: [(name: String, slot: CounterSlot, help: String)] = [
        ("mss_clamped", .mssClamped, "TCP SYNs whose MSS option was lowered (clamp_mss)."),
        ("quic_by_server_id", .quicByServerID, "New flows of quic VIPs placed on the backend their connection ID names."),
        (
            "quic_unknown_server_id", .quicUnknownServerID,
            "New flows of quic VIPs whose server id no backend has (Maglev placed them)."
        ),
        (
            "quic_without_server_id", .quicWithoutServerID,
            "New flows of quic VIPs without a server id to read (Initial, 0-RTT, short ID; Maglev)."
        ),
        ("fragments_followed", .fragmentsFollowed, "Later IP fragments sent to the backend of their datagram's first fragment."),
        (
            "fragment_table_full", .fragmentTableFull,
            "First fragments whose entry replaced a live one (fragment table bucket full)."
        ),
        (
            "second_hop", .secondHop,
            "Packets sent carrying a second hop: flows this node did not know that the VIP's previous table gave another backend."
        ),
    ]
    /// Slots in a block: five cache lines.
    public static let count = 40
}

/// The host-path thread's counters (its own block: it is their only writer).
public enum HostSlot: Int, CaseIterable, Sendable {
    /// Frames handed to the kernel (written to a TAP).
    case toKernel = 0
    /// Frames the TAP refused (freed).
    case toKernelFailed = 1
    /// Frames from the kernel dropped because the ring to the transmitting worker was full.
    case fromKernelDropped = 2
}

/// One worker's counters. Copies share the same memory; `deallocate` once, after the worker and
/// every reader are done.
public struct CounterBlock: @unchecked Sendable {
    public let slots: Counters

    /// A zeroed block on its own cache lines.
    public static func allocate() -> CounterBlock { CounterBlock(slots: Counters.allocate(count: CounterSlot.count)) }

    public func deallocate() { slots.deallocate() }

    /// The owning worker adds to a slot (`offset` past it: an outcome's slot past `outcomes`).
    @inlinable @inline(__always)
    public func add(_ slot: CounterSlot, offset: Int = 0, _ n: UInt64 = 1) { slots.add(slot.rawValue &+ offset, n) }

    /// The owning worker sets a gauge slot.
    @inlinable @inline(__always)
    public func set(_ slot: CounterSlot, _ value: UInt64) {
        (slots.base + slot.rawValue).pointee.store(value, ordering: .relaxed)
    }

    /// The host-path thread adds to one of its slots.
    @inlinable @inline(__always)
    public func add(_ slot: HostSlot, _ n: UInt64 = 1) { slots.add(slot.rawValue, n) }

    /// Any thread reads a slot.
    @inlinable @inline(__always)
    public func load(_ slot: CounterSlot, offset: Int = 0) -> UInt64 { slots.load(slot.rawValue &+ offset) }

    @inlinable @inline(__always)
    public func load(_ slot: HostSlot) -> UInt64 { slots.load(slot.rawValue) }

    /// Adds after everything the worker counted before it (release): a reader that sees this
    /// value by `loadAcquiring` also sees those counts. A plain store on x86.
    @inlinable @inline(__always)
    public func addReleasing(_ slot: CounterSlot, _ n: UInt64) { slots.addReleasing(slot.rawValue, n) }

    @inlinable @inline(__always)
    public func loadAcquiring(_ slot: CounterSlot) -> UInt64 { slots.loadAcquiring(slot.rawValue) }
}

/// An array of single-writer counters, cache-line aligned: the worker blocks, and a snapshot's
/// packets per VIP and backend.
public struct Counters: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Atomic<UInt64>>
    public let count: Int

    public static func allocate(count: Int) -> Counters {
        let n = max(1, count)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n * MemoryLayout<Atomic<UInt64>>.stride, alignment: 64)
        let base = raw.bindMemory(to: Atomic<UInt64>.self, capacity: n)
        for i in 0..<n { (base + i).initialize(to: Atomic(0)) }
        return Counters(base: base, count: n)
    }

    public func deallocate() { UnsafeMutableRawPointer(base).deallocate() }

    /// Counters in memory the caller allocated, zeroed and frees (64-byte aligned,
    /// `count * 8` bytes): a zero word is a zero counter.
    public init(zeroedMemory: UnsafeMutableRawPointer, count: Int) {
        self.init(base: zeroedMemory.bindMemory(to: Atomic<UInt64>.self, capacity: count), count: count)
    }

    @usableFromInline
    init(base: UnsafeMutablePointer<Atomic<UInt64>>, count: Int) {
        self.base = base
        self.count = count
    }

    /// The counters from `offset` on.
    @inlinable @inline(__always)
    public func dropFirst(_ offset: Int) -> Counters { Counters(base: base + offset, count: count &- offset) }

    /// Adds `n` to counter `i`; only one thread may add to a given counter.
    @inlinable @inline(__always)
    public func add(_ i: Int, _ n: UInt64 = 1) {
        let c = base + i
        c.pointee.store(c.pointee.load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }

    /// Reads counter `i` (any thread).
    @inlinable @inline(__always)
    public func load(_ i: Int) -> UInt64 { (base + i).pointee.load(ordering: .relaxed) }

    @inlinable @inline(__always)
    public func addReleasing(_ i: Int, _ n: UInt64) {
        let c = base + i
        c.pointee.store(c.pointee.load(ordering: .relaxed) &+ n, ordering: .releasing)
    }

    @inlinable @inline(__always)
    public func loadAcquiring(_ i: Int) -> UInt64 { (base + i).pointee.load(ordering: .acquiring) }
}
