// The per-worker flow table: remembers which backend each live flow went to, so established flows
// keep their backend when the backend set changes. Fixed capacity, no allocation after creation,
// owned by one worker (no sharing, no locks).
//
// Layout: a power-of-two array of 64-byte entries (one cache line each). A flow lives within
// `probeWindow` entries of its home index (the high bits of the flow hash); a probe scans that window
// once and either finds the flow or picks where to put it: an empty or expired entry, otherwise the
// least recently seen one (an eviction, counted).

import CPrefetch
import TernWire

/// One flow: 40 bytes of key, then the backend it went to. Exactly one cache line.
public struct FlowEntry: Sendable {
    public var sourceHigh: UInt64
    public var sourceLow: UInt64
    public var destinationHigh: UInt64
    public var destinationLow: UInt64
    /// `FiveTuple.portsAndProtocol`; 0 marks an empty entry.
    public var portsAndProtocol: UInt64
    /// The backend's address: after a reload it finds the backend again in the new snapshot.
    public var backendHigh: UInt64
    public var backendLow: UInt64
    /// Flow-table time (seconds) of the last packet.
    public var lastSeen: UInt32
    /// The snapshot generation `backendSlot` refers to.
    public var generation: UInt16
    public var backendSlot: BackendSlot

    @inlinable @inline(__always)
    public init(
        sourceHigh: UInt64, sourceLow: UInt64, destinationHigh: UInt64, destinationLow: UInt64, portsAndProtocol: UInt64,
        backendHigh: UInt64, backendLow: UInt64, lastSeen: UInt32, generation: UInt16, backendSlot: BackendSlot
    ) {
        self.sourceHigh = sourceHigh
        self.sourceLow = sourceLow
        self.destinationHigh = destinationHigh
        self.destinationLow = destinationLow
        self.portsAndProtocol = portsAndProtocol
        self.backendHigh = backendHigh
        self.backendLow = backendLow
        self.lastSeen = lastSeen
        self.generation = generation
        self.backendSlot = backendSlot
    }

    /// Set in `portsAndProtocol` when the backend is IPv6 (a bit the key itself never uses).
    public static let backendIsV6: UInt64 = 0x1_0000

    @inlinable @inline(__always)
    func matches(_ t: FiveTuple) -> Bool {
        portsAndProtocol & ~FlowEntry.backendIsV6 == t.portsAndProtocol && destinationLow == t.destination.low && sourceLow == t.source.low
            && sourceHigh == t.source.high && destinationHigh == t.destination.high
    }

    @inlinable
    public var backendAddress: IPAddress {
        IPAddress(high: backendHigh, low: backendLow, isV6: portsAndProtocol & FlowEntry.backendIsV6 != 0)
    }
}

/// Where a probe found a flow or where a new flow should go.
public struct FlowProbe {
    public var index: Int
    public var found: Bool
    /// The new flow would replace a live flow (the window is full).
    public var evicts: Bool

    @inlinable @inline(__always)
    public init(index: Int, found: Bool, evicts: Bool) {
        self.index = index
        self.found = found
        self.evicts = evicts
    }
}

public struct FlowTableCounters: Sendable {
    public var inserted: UInt64 = 0
    public var evicted: UInt64 = 0
    public var expired: UInt64 = 0
    public init() {}
}

public struct FlowTable: ~Copyable {
    public static let probeWindow = 8
    public let entries: UnsafeMutablePointer<FlowEntry>
    /// Entries in the table; a power of two.
    public let capacity: Int
    public let tcpIdleTimeout: UInt32
    public let udpIdleTimeout: UInt32
    public var counters = FlowTableCounters()

    /// `capacity` is rounded up to a power of two (at least `probeWindow`).
    public init(capacity requested: Int, tcpIdleTimeout: UInt32, udpIdleTimeout: UInt32) {
        var c = FlowTable.probeWindow
        while c < requested { c <<= 1 }
        capacity = c
        let raw = UnsafeMutableRawPointer.allocate(byteCount: c * MemoryLayout<FlowEntry>.stride, alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: c * MemoryLayout<FlowEntry>.stride)
        entries = raw.bindMemory(to: FlowEntry.self, capacity: c)
        self.tcpIdleTimeout = tcpIdleTimeout
        self.udpIdleTimeout = udpIdleTimeout
    }

    deinit { UnsafeMutableRawPointer(entries).deallocate() }

    @inlinable @inline(__always)
    public func homeIndex(_ hash: UInt64) -> Int {
        Int(truncatingIfNeeded: hash >> 32) & (capacity &- 1)
    }

    /// Starts loading the first two entries of a flow's window, so that `probe` a few packets later
    /// finds them in cache (most flows sit in their home entry or the next).
    @inlinable @inline(__always)
    public func prefetch(hash: UInt64) {
        let e = entries + homeIndex(hash)
        tern_prefetch(e)
        tern_prefetch(e + 1)
    }

    @inlinable @inline(__always)
    func isLive(_ e: UnsafeMutablePointer<FlowEntry>, now: UInt32) -> Bool {
        if e.pointee.portsAndProtocol == 0 { return false }
        let timeout = UInt8(truncatingIfNeeded: e.pointee.portsAndProtocol >> 8) == IPProtocol.tcp ? tcpIdleTimeout : udpIdleTimeout
        return now &- e.pointee.lastSeen <= timeout
    }

    /// Scans the flow's window once. A matching entry that has idled out counts as not found and its
    /// place is reused, so a flow never has two entries.
    @inlinable
    public mutating func probe(_ t: FiveTuple, hash: UInt64, now: UInt32) -> FlowProbe {
        let home = homeIndex(hash)
        var free = -1
        var oldest = home
        var oldestSeen = UInt32.max
        for k in 0..<FlowTable.probeWindow {
            let i = (home &+ k) & (capacity &- 1)
            let e = entries + i
            // Entries are never emptied (expired ones are reused in place) and a flow goes to the
            // first free entry of its window, so a never-used entry ends the search.
            if e.pointee.portsAndProtocol == 0 {
                return FlowProbe(index: free >= 0 ? free : i, found: false, evicts: false)
            }
            if e.pointee.matches(t) {
                if isLive(e, now: now) { return FlowProbe(index: i, found: true, evicts: false) }
                counters.expired &+= 1
                return FlowProbe(index: i, found: false, evicts: false)
            }
            if free < 0 {
                if !isLive(e, now: now) {
                    free = i
                } else if e.pointee.lastSeen < oldestSeen {
                    oldestSeen = e.pointee.lastSeen
                    oldest = i
                }
            }
        }
        if free >= 0 { return FlowProbe(index: free, found: false, evicts: false) }
        return FlowProbe(index: oldest, found: false, evicts: true)
    }

    /// Records a new flow where `probe` said.
    @inlinable @inline(__always)
    public mutating func insert(
        _ t: FiveTuple, at p: FlowProbe, backend: IPAddress, slot: BackendSlot, generation: UInt16, now: UInt32
    ) {
        counters.inserted &+= 1
        if p.evicts { counters.evicted &+= 1 }
        entries[p.index] = FlowEntry(
            sourceHigh: t.source.high, sourceLow: t.source.low,
            destinationHigh: t.destination.high, destinationLow: t.destination.low,
            portsAndProtocol: t.portsAndProtocol | (backend.isV6 ? FlowEntry.backendIsV6 : 0),
            backendHigh: backend.high, backendLow: backend.low,
            lastSeen: now, generation: generation, backendSlot: slot)
    }

    /// Live flows (walks the whole table; for stats, not the packet path).
    public func liveCount(now: UInt32) -> Int {
        var n = 0
        for i in 0..<capacity where isLive(entries + i, now: now) { n += 1 }
        return n
    }
}
