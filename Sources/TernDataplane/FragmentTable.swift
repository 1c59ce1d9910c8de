// IP fragments of a VIP's flows. Only a datagram's first fragment carries the ports, so it takes
// the normal path (flow table, Maglev) and leaves here the flow it belongs to, keyed by (source,
// destination, protocol, identification); the later fragments find it and are classified as
// packets of that flow, so the flow table sends them to the same backend. A later fragment whose
// first has not been seen (reordered ahead of it) is held: the pipeline says `held`, the caller
// keeps the buffer (`hold`) and, once a first fragment has passed, takes back the held fragments
// whose first it was (`takeReleased`) and runs them again; held fragments whose first does not come
// within `holdSeconds` are given back to be freed, counted `fragment_timeout` (`takeExpired`).
//
// Fixed capacity, per worker, no allocation after creation: buckets of 4 entries; an entry lives
// until its datagram's last fragment passes or `lifetime` seconds go by; a full bucket gives up its
// oldest entry (counted `fragment_table_full`). At most `heldCapacity` fragments are held; beyond
// that a fragment ahead of its first is dropped `fragment`.

import TernMetrics
import TernWire

/// A datagram: its addresses, and identification, protocol and family.
public struct FragmentKey: Equatable, Sendable {
    @usableFromInline var sourceHigh: UInt64 = 0
    @usableFromInline var sourceLow: UInt64 = 0
    @usableFromInline var destinationHigh: UInt64 = 0
    @usableFromInline var destinationLow: UInt64 = 0
    /// Identification (IPv4: 16 bits, IPv6: 32 bits) << 16 | protocol << 8 | family (4 or 6).
    @usableFromInline var idProtocol: UInt64 = 0

    @inlinable init() {}

    @inlinable
    init(source: IPAddress, destination: IPAddress, id: UInt32, ipProtocol: UInt8) {
        sourceHigh = source.high
        sourceLow = source.low
        destinationHigh = destination.high
        destinationLow = destination.low
        idProtocol = UInt64(id) << 16 | UInt64(ipProtocol) << 8 | (source.isV6 ? 6 : 4)
    }
}

/// Where a datagram's fragments go: the flow (and VIP) its first fragment was classified as.
public struct FragmentEntry: Sendable {
    @usableFromInline var key = FragmentKey()
    @usableFromInline var tuple = FiveTuple(
        source: IPAddress(v4: 0), destination: IPAddress(v4: 0), sourcePort: 0, destinationPort: 0, ipProtocol: 0)
    @usableFromInline var hash: UInt64 = 0
    @usableFromInline var vip: Int32 = -1
    @usableFromInline var generation: UInt32 = 0
    /// When it was written (flow-table seconds); 0: free.
    @usableFromInline var seen: UInt32 = 0

    @inlinable init() {}
}

/// A later fragment held until its first passes: its datagram's key and the caller's handle on
/// its buffer (ternd: the mbuf; the simulator: its copy).
public struct HeldFragment: Sendable {
    var key = FragmentKey()
    var handle: UInt = 0
    var since: UInt32 = 0
    /// Chosen by `takeReleased` or `takeExpired`.
    var selected = false
}

public struct FragmentTable: ~Copyable {
    public static let ways = 4
    /// Fragments a worker holds at most (their mbufs are part of `MbufPlan`'s in-flight share).
    public static let heldCapacity = 64
    /// Held fragments are given up after this many flow-table seconds (between 1 and 2 s).
    public static let holdSeconds: UInt32 = 2
    /// Seconds a datagram's fragments may take to arrive.
    public static let lifetime: UInt32 = 10
    @usableFromInline let entries: UnsafeMutablePointer<FragmentEntry>
    @usableFromInline let bucketMask: Int
    /// Flow-table time, set once per burst.
    public var now: UInt32 = 1
    /// The worker's counters (`fragments_followed`, `fragment_table_full`, `fragment_timeout`).
    public let counters: CounterBlock
    /// Held fragments, oldest first.
    @usableFromInline let held: UnsafeMutablePointer<HeldFragment>
    public private(set) var heldCount = 0
    /// `held` outcomes of the current burst whose buffers the caller has not handed over yet.
    @usableFromInline var reserved = 0
    /// A first fragment passed while fragments were held: `takeReleased` has something to look at.
    @usableFromInline var firstPassed = false

    /// `capacity` entries (rounded up to a power of two, at least `ways`).
    public init(capacity: Int, counters: CounterBlock) {
        self.counters = counters
        var c = FragmentTable.ways
        while c < capacity { c <<= 1 }
        entries = .allocate(capacity: c)
        entries.initialize(repeating: FragmentEntry(), count: c)
        bucketMask = c / FragmentTable.ways - 1
        held = .allocate(capacity: FragmentTable.heldCapacity)
        held.initialize(repeating: HeldFragment(), count: FragmentTable.heldCapacity)
    }

    deinit {
        entries.deallocate()
        held.deallocate()
    }

    /// Called at the start of every burst.
    @inlinable @inline(__always)
    public mutating func beginBurst(now: UInt32) {
        self.now = now
        reserved = 0
    }

    @inlinable
    func bucket(_ k: FragmentKey) -> UnsafeMutablePointer<FragmentEntry> {
        let x =
            ((k.sourceLow ^ k.destinationLow &* 0x9E37_79B9_7F4A_7C15) ^ k.sourceHigh ^ k.destinationHigh ^ k.idProtocol)
            &* 0xC2B2_AE3D_27D4_EB4F
        return entries + (Int(truncatingIfNeeded: x >> 40) & bucketMask) &* FragmentTable.ways
    }

    /// Whether an entry is in use (written, within its lifetime).
    @inlinable
    func isLive(_ e: UnsafeMutablePointer<FragmentEntry>) -> Bool {
        e.pointee.seen != 0 && now &- e.pointee.seen <= FragmentTable.lifetime
    }

    /// The live entry of `k`'s datagram, or nil.
    @inlinable
    func entry(_ k: FragmentKey) -> UnsafeMutablePointer<FragmentEntry>? {
        let b = bucket(k)
        for w in 0..<FragmentTable.ways where isLive(b + w) && b[w].key == k { return b + w }
        return nil
    }

    /// Remembers the flow of a first fragment; returns false when it took a live entry's place.
    @inlinable
    public mutating func insert(
        source: IPAddress, destination: IPAddress, id: UInt32, ipProtocol: UInt8, tuple: FiveTuple, hash: UInt64, vip: Int,
        generation: UInt32
    ) -> Bool {
        let key = FragmentKey(source: source, destination: destination, id: id, ipProtocol: ipProtocol)
        var slot = bucket(key)
        var evicted = true
        if let same = entry(key) {
            slot = same
            evicted = false
        } else {
            // A free or expired way, else the oldest.
            let b = slot
            for w in 0..<FragmentTable.ways {
                if !isLive(b + w) {
                    slot = b + w
                    evicted = false
                    break
                }
                if b[w].seen < slot.pointee.seen { slot = b + w }
            }
        }
        slot.pointee = FragmentEntry()
        slot.pointee.key = key
        slot.pointee.tuple = tuple
        slot.pointee.hash = hash
        slot.pointee.vip = Int32(truncatingIfNeeded: vip)
        slot.pointee.generation = generation
        slot.pointee.seen = now
        // Fragments held before, or held earlier in this burst (handed over after it), may be its.
        if heldCount > 0 || reserved > 0 { firstPassed = true }
        return !evicted
    }

    /// The entry of a later fragment's datagram, or nil; `last`: its final fragment (the entry then
    /// lives one more second, for fragments reordered behind it).
    @inlinable
    public mutating func find(source: IPAddress, destination: IPAddress, id: UInt32, ipProtocol: UInt8, last: Bool)
        -> (tuple: FiveTuple, hash: UInt64, vip: Int, generation: UInt32)?
    {
        guard let e = entry(FragmentKey(source: source, destination: destination, id: id, ipProtocol: ipProtocol)) else {
            return nil
        }
        if last { e.pointee.seen = now &- FragmentTable.lifetime }
        return (e.pointee.tuple, e.pointee.hash, Int(e.pointee.vip), e.pointee.generation)
    }

    /// Whether a later fragment ahead of its first can be held (then the pipeline says `held` and
    /// the caller must `hold` it in the same burst).
    @usableFromInline
    mutating func reserveHold() -> Bool {
        guard heldCount &+ reserved < FragmentTable.heldCapacity else { return false }
        reserved &+= 1
        return true
    }

    /// Keeps a fragment the pipeline said `held` for: `frame` is its bytes (to find its key again),
    /// `handle` what `takeReleased`/`takeExpired` give back. False (the caller frees it): the
    /// frame is not a fragment, or no hold was reserved for it.
    public mutating func hold(frame: UnsafeRawPointer, length: Int, handle: UInt) -> Bool {
        var net = NetworkHeader()
        guard reserved > 0, heldCount < FragmentTable.heldCapacity, Parser.parseNetwork(frame, length: length, into: &net) == .ok,
            net.isFragment, let f = Parser.fragmentFields(frame, net)
        else { return false }
        reserved -= 1
        let key = FragmentKey(source: net.source, destination: net.destination, id: f.id, ipProtocol: net.ipProtocol)
        held[heldCount] = HeldFragment(key: key, handle: handle, since: now)
        heldCount += 1
        return true
    }

    /// Takes the held fragments whose first fragment has passed (oldest first) into `handles`
    /// (room for `heldCapacity`); returns how many. The caller runs them through the pipeline again.
    public mutating func takeReleased(into handles: UnsafeMutablePointer<UInt>) -> Int {
        guard firstPassed else { return 0 }
        firstPassed = false
        for i in 0..<heldCount { held[i].selected = entry(held[i].key) != nil }
        return takeSelected(into: handles)
    }

    /// Takes the held fragments older than `holdSeconds` (all of them with `all`) into `handles`
    /// and counts them `fragment_timeout`; the caller frees them.
    public mutating func takeExpired(now: UInt32, all: Bool = false, into handles: UnsafeMutablePointer<UInt>) -> Int {
        for i in 0..<heldCount { held[i].selected = all || now &- held[i].since >= FragmentTable.holdSeconds }
        let n = takeSelected(into: handles)
        counters.add(.outcomes, offset: Int(Outcome.dropFragmentTimeout.rawValue), UInt64(n))
        return n
    }

    /// Moves the selected held fragments out, keeping the rest in order.
    mutating func takeSelected(into handles: UnsafeMutablePointer<UInt>) -> Int {
        var kept = 0
        var n = 0
        for i in 0..<heldCount {
            let h = held[i]
            if h.selected {
                handles[n] = h.handle
                n += 1
            } else {
                held[kept] = h
                kept += 1
            }
        }
        heldCount = kept
        return n
    }
}
