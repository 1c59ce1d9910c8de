// IP fragments of a VIP's flows. Only a datagram's first fragment carries the ports, so it takes
// the normal path (flow table, Maglev) and leaves here the flow it belongs to, keyed by (source,
// destination, protocol, identification); the later fragments find it and are classified as
// packets of that flow, so the flow table sends them to the same backend. A later fragment whose
// first has not been seen (reordered ahead of it, or the first was lost) is dropped `fragment`.
//
// Fixed capacity, per worker, no allocation after creation: buckets of 4 entries; an entry lives
// until its datagram's last fragment passes or `lifetime` seconds go by; a full bucket gives up its
// oldest entry (counted `fragment_table_full`).

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

public struct FragmentTable: ~Copyable {
    public static let ways = 4
    /// Seconds a datagram's fragments may take to arrive.
    public static let lifetime: UInt32 = 10
    @usableFromInline let entries: UnsafeMutablePointer<FragmentEntry>
    @usableFromInline let bucketMask: Int
    /// Flow-table time, set once per burst.
    public var now: UInt32 = 1
    /// The worker's counters (`fragments_followed`, `fragment_table_full`).
    public let counters: CounterBlock

    /// `capacity` entries (rounded up to a power of two, at least `ways`).
    public init(capacity: Int, counters: CounterBlock) {
        self.counters = counters
        var c = FragmentTable.ways
        while c < capacity { c <<= 1 }
        entries = .allocate(capacity: c)
        entries.initialize(repeating: FragmentEntry(), count: c)
        bucketMask = c / FragmentTable.ways - 1
    }

    deinit { entries.deallocate() }

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
}
