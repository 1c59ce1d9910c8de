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

/// Where a datagram's fragments go: the flow (and VIP) its first fragment was classified as.
public struct FragmentEntry: Sendable {
    @usableFromInline var sourceHigh: UInt64 = 0
    @usableFromInline var sourceLow: UInt64 = 0
    @usableFromInline var destinationHigh: UInt64 = 0
    @usableFromInline var destinationLow: UInt64 = 0
    /// Identification (IPv4: 16 bits, IPv6: 32 bits) << 16 | protocol << 8 | family (4 or 6).
    @usableFromInline var idProtocol: UInt64 = 0
    @usableFromInline var tuple = FiveTuple(source: IPAddress(v4: 0), destination: IPAddress(v4: 0), sourcePort: 0, destinationPort: 0, ipProtocol: 0)
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
    var sourceHigh: UInt64 = 0
    var sourceLow: UInt64 = 0
    var destinationHigh: UInt64 = 0
    var destinationLow: UInt64 = 0
    var idProtocol: UInt64 = 0
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

    /// The key words of a fragment: its addresses, and identification, protocol and family.
    @inlinable
    static func idProtocol(id: UInt32, ipProtocol: UInt8, isV6: Bool) -> UInt64 {
        UInt64(id) << 16 | UInt64(ipProtocol) << 8 | (isV6 ? 6 : 4)
    }

    @inlinable
    func bucket(_ s: IPAddress, _ d: IPAddress, _ idProtocol: UInt64) -> UnsafeMutablePointer<FragmentEntry> {
        let x = ((s.low ^ d.low &* 0x9E37_79B9_7F4A_7C15) ^ s.high ^ d.high ^ idProtocol) &* 0xC2B2_AE3D_27D4_EB4F
        return entries + (Int(truncatingIfNeeded: x >> 40) & bucketMask) &* FragmentTable.ways
    }

    @inlinable
    func matches(_ e: UnsafeMutablePointer<FragmentEntry>, _ s: IPAddress, _ d: IPAddress, _ idProtocol: UInt64) -> Bool {
        e.pointee.seen != 0 && now &- e.pointee.seen <= FragmentTable.lifetime && e.pointee.idProtocol == idProtocol
            && e.pointee.sourceLow == s.low && e.pointee.sourceHigh == s.high && e.pointee.destinationLow == d.low
            && e.pointee.destinationHigh == d.high
    }

    /// Remembers the flow of a first fragment; returns false when it took a live entry's place.
    @inlinable
    public mutating func insert(
        source: IPAddress, destination: IPAddress, id: UInt32, ipProtocol: UInt8, tuple: FiveTuple, hash: UInt64, vip: Int,
        generation: UInt32
    ) -> Bool {
        let key = FragmentTable.idProtocol(id: id, ipProtocol: ipProtocol, isV6: source.isV6)
        let b = bucket(source, destination, key)
        var slot = b
        var evicted = true
        for w in 0..<FragmentTable.ways {
            let e = b + w
            if matches(e, source, destination, key) || e.pointee.seen == 0 || now &- e.pointee.seen > FragmentTable.lifetime {
                slot = e
                evicted = false
                break
            }
            if e.pointee.seen < slot.pointee.seen { slot = e }
        }
        slot.pointee = FragmentEntry()
        slot.pointee.sourceHigh = source.high
        slot.pointee.sourceLow = source.low
        slot.pointee.destinationHigh = destination.high
        slot.pointee.destinationLow = destination.low
        slot.pointee.idProtocol = key
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
        let key = FragmentTable.idProtocol(id: id, ipProtocol: ipProtocol, isV6: source.isV6)
        let b = bucket(source, destination, key)
        for w in 0..<FragmentTable.ways where matches(b + w, source, destination, key) {
            let e = b + w
            let found = (e.pointee.tuple, e.pointee.hash, Int(e.pointee.vip), e.pointee.generation)
            if last { e.pointee.seen = now &- FragmentTable.lifetime }
            return found
        }
        return nil
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
        let s = net.source
        let d = net.destination
        held[heldCount] = HeldFragment(
            sourceHigh: s.high, sourceLow: s.low, destinationHigh: d.high, destinationLow: d.low,
            idProtocol: FragmentTable.idProtocol(id: f.id, ipProtocol: net.ipProtocol, isV6: s.isV6), handle: handle, since: now)
        heldCount += 1
        return true
    }

    /// Whether the datagram of a held fragment now has its entry.
    func isReleasable(_ h: HeldFragment) -> Bool {
        let isV6 = h.idProtocol & 0xFF == 6
        let s = IPAddress(high: h.sourceHigh, low: h.sourceLow, isV6: isV6)
        let d = IPAddress(high: h.destinationHigh, low: h.destinationLow, isV6: isV6)
        let b = bucket(s, d, h.idProtocol)
        return (0..<FragmentTable.ways).contains { matches(b + $0, s, d, h.idProtocol) }
    }

    /// Takes the held fragments whose first fragment has passed (oldest first) into `handles`
    /// (room for `heldCapacity`); returns how many. The caller runs them through the pipeline again.
    public mutating func takeReleased(into handles: UnsafeMutablePointer<UInt>) -> Int {
        guard firstPassed else { return 0 }
        firstPassed = false
        for i in 0..<heldCount { held[i].selected = isReleasable(held[i]) }
        return takeSelected(into: handles)
    }

    /// Takes the held fragments older than `holdSeconds` (all of them with `all`) into `handles`
    /// and counts them `fragment_timeout`; the caller frees them.
    public mutating func takeExpired(now: UInt32, all: Bool = false, into handles: UnsafeMutablePointer<UInt>) -> Int {
        for i in 0..<heldCount { held[i].selected = all || now &- held[i].since >= FragmentTable.holdSeconds }
        let n = takeSelected(into: handles)
        counters.add(CounterSlot.outcomes &+ Int(Outcome.dropFragmentTimeout.rawValue), UInt64(n))
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
