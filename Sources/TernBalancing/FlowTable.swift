// The per-worker flow table: remembers which backend each live flow went to, so established flows
// keep their backend when the backend set changes. Fixed capacity, no allocation after creation,
// owned by one worker (no sharing, no locks).
//
// Layout: buckets of 8 ways. A bucket's metadata is one cache line (per way: a 16-bit tag from the
// flow hash, 0 = never used; the time of the last packet; TCP or UDP timeout class) and its 8
// entries are 8 more lines holding the full keys. A lookup reads the metadata line, then only the
// entry whose tag matches; a new flow takes a never-used or idled-out way, otherwise the way seen
// least recently (an eviction, counted). The burst path prefetches both lines a stage ahead.

import CFastPath
import TernMetrics
import TernWire

/// One flow: 40 bytes of key, then the backend it went to. Exactly one cache line.
public struct FlowEntry: Sendable {
    public var sourceHigh: UInt64
    public var sourceLow: UInt64
    public var destinationHigh: UInt64
    public var destinationLow: UInt64
    /// `FiveTuple.portsAndProtocol`.
    public var portsAndProtocol: UInt64
    /// The backend's address: after a reload it finds the backend again in the new snapshot.
    public var backendHigh: UInt64
    public var backendLow: UInt64
    /// The snapshot generation `backendSlot` refers to (32 bits: it does not wrap in any lifetime).
    public var generation: UInt32
    public var backendSlot: BackendSlot
    /// `v6Flag` when the backend is IPv6 (kept out of the key words, so a lookup compares them as
    /// they are); `secondHopFlag` when the flow's packets carry a second hop (second chance).
    public var backendFlags: UInt16

    public static let v6Flag: UInt16 = 1
    public static let secondHopFlag: UInt16 = 2

    @inlinable @inline(__always)
    public init(
        sourceHigh: UInt64, sourceLow: UInt64, destinationHigh: UInt64, destinationLow: UInt64, portsAndProtocol: UInt64,
        backendHigh: UInt64, backendLow: UInt64, backendIsV6: Bool, generation: UInt32, backendSlot: BackendSlot
    ) {
        self.sourceHigh = sourceHigh
        self.sourceLow = sourceLow
        self.destinationHigh = destinationHigh
        self.destinationLow = destinationLow
        self.portsAndProtocol = portsAndProtocol
        self.backendHigh = backendHigh
        self.backendLow = backendLow
        self.generation = generation
        self.backendSlot = backendSlot
        self.backendFlags = backendIsV6 ? FlowEntry.v6Flag : 0
    }

    @inlinable @inline(__always)
    func matches(_ t: FiveTuple) -> Bool {
        // In memory order: the compiler compares the words as two vectors and one.
        sourceHigh == t.sourceHigh && sourceLow == t.sourceLow && destinationHigh == t.destinationHigh
            && destinationLow == t.destinationLow && portsAndProtocol == t.portsAndProtocol
    }

    @inlinable
    public var backendAddress: IPAddress {
        IPAddress(high: backendHigh, low: backendLow, isV6: backendFlags & FlowEntry.v6Flag != 0)
    }
}

/// Where a probe found a flow or where a new flow should go.
public struct FlowProbe {
    /// Entry index (bucket * 8 + way).
    public var index: Int
    public var found: Bool
    /// The new flow would replace a live flow (the bucket is full).
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

    /// What a worker's block says now.
    public init(reading block: CounterBlock) {
        inserted = block.load(CounterSlot.flowsInserted)
        evicted = block.load(CounterSlot.flowsEvicted)
        expired = block.load(CounterSlot.flowsExpired)
    }
}

public struct FlowTable: ~Copyable {
    public static let ways = 8
    /// Bucket metadata: tags (8 x UInt16) at 0, last-seen times (8 x UInt32) at 16, timeout class
    /// (8 x UInt8: 0 TCP, 1 UDP and others, 2 TCP after FIN or RST) at 48.
    @usableFromInline static let tagsOffset = 0
    @usableFromInline static let seenOffset = 16
    @usableFromInline static let classOffset = 48

    public let entries: UnsafeMutablePointer<FlowEntry>
    @usableFromInline let meta: UnsafeMutableRawPointer
    /// Entries in the table (buckets x 8); a power of two.
    public let capacity: Int
    @usableFromInline let bucketMask: Int
    public let tcpIdleTimeout: UInt32
    public let udpIdleTimeout: UInt32
    /// How long a TCP flow lives after its FIN or RST (IPVS keeps such states briefly too).
    public let tcpClosingTimeout: UInt32
    /// The three timeouts by class (0 TCP, 1 UDP, 2 TCP closing), read with one indexed load.
    @usableFromInline let timeouts: UnsafeMutablePointer<UInt32>
    /// Where inserts, evictions and expiries are counted (the worker's block).
    public let block: CounterBlock
    let ownsBlock: Bool
    /// False when the entries and metadata live in memory the table was given (a flow-state file).
    let ownsMemory: Bool
    public var counters: FlowTableCounters { FlowTableCounters(reading: block) }
    /// `survey`'s place in its pass over the buckets and its count so far.
    var surveyCursor = 0
    var surveyTally = 0

    /// Memory for a table of a given capacity made elsewhere (`FlowStateFile`): `entries` holds
    /// `capacity` entries (64-byte aligned), `meta` one 64-byte line per bucket, both zeroed or
    /// left by an earlier table of the same geometry.
    public struct Memory {
        public var entries: UnsafeMutableRawPointer
        public var meta: UnsafeMutableRawPointer
        public init(entries: UnsafeMutableRawPointer, meta: UnsafeMutableRawPointer) {
            self.entries = entries
            self.meta = meta
        }
    }

    /// Entries a table asked for `requested` has: a power of two, at least 8.
    public static func roundedCapacity(_ requested: Int) -> Int {
        var c = FlowTable.ways
        while c < requested { c <<= 1 }
        return c
    }

    /// Memory a table of `capacity` entries maps: a 64-byte entry and 8 bytes of bucket metadata each.
    public static func memoryBytes(capacity: Int) -> Int {
        let c = roundedCapacity(capacity)
        return c * MemoryLayout<FlowEntry>.stride + c / FlowTable.ways * 64
    }

    /// `capacity` is rounded up to a power of two (at least 8). Events are counted in `counters`,
    /// the worker's block, or a block of the table's own. `memory`: where the table lives (its
    /// flows kept), instead of fresh anonymous memory.
    public init(
        capacity requested: Int, tcpIdleTimeout: UInt32, udpIdleTimeout: UInt32, tcpClosingTimeout: UInt32,
        counters: CounterBlock? = nil, memory: Memory? = nil
    ) {
        block = counters ?? CounterBlock.allocate()
        ownsBlock = counters == nil
        let c = FlowTable.roundedCapacity(requested)
        capacity = c
        bucketMask = c / FlowTable.ways - 1
        ownsMemory = memory == nil
        entries = (memory?.entries ?? FlowTable.allocateTable(bytes: c * MemoryLayout<FlowEntry>.stride))
            .bindMemory(to: FlowEntry.self, capacity: c)
        meta = memory?.meta ?? FlowTable.allocateTable(bytes: c / FlowTable.ways * 64)
        self.tcpIdleTimeout = tcpIdleTimeout
        self.udpIdleTimeout = udpIdleTimeout
        self.tcpClosingTimeout = tcpClosingTimeout
        timeouts = .allocate(capacity: 4)
        timeouts.initialize(from: [tcpIdleTimeout, udpIdleTimeout, tcpClosingTimeout, tcpClosingTimeout], count: 4)
    }

    deinit {
        if ownsBlock { block.deallocate() }
        timeouts.deallocate()
        guard ownsMemory else { return }
        tern_huge_free(entries, capacity * MemoryLayout<FlowEntry>.stride)
        tern_huge_free(meta, capacity / FlowTable.ways * 64)
    }

    /// Zeroed, on transparent huge pages where the kernel allows (a million flows span 64 MB and
    /// would cost a TLB miss per lookup on 4 KiB pages), and touched now so that no page fault
    /// happens on the packet path.
    static func allocateTable(bytes: Int) -> UnsafeMutableRawPointer {
        guard let p = tern_huge_alloc(bytes) else { fatalError("flow table: cannot map \(bytes) bytes") }
        p.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        return p
    }

    @inlinable @inline(__always)
    func bucket(_ hash: UInt64) -> Int { Int(truncatingIfNeeded: hash >> 32) & bucketMask }

    /// Never 0 (0 marks a never-used way).
    @inlinable @inline(__always)
    func tag(_ hash: UInt64) -> UInt16 { UInt16(truncatingIfNeeded: hash >> 16) | 1 }

    @inlinable @inline(__always)
    func metadata(_ b: Int) -> UnsafeMutableRawPointer { meta + b &* 64 }

    /// The bucket of an entry index: index / 8 (`ways`) as a shift, not a signed division.
    @inlinable @inline(__always)
    static func bucket(ofEntry index: Int) -> Int { index &>> 3 }

    /// Stage 1 of a burst: start loading the flow's bucket metadata.
    @inlinable @inline(__always)
    public func prefetch(hash: UInt64) {
        tern_prefetch(metadata(bucket(hash)))
    }

    /// Stage 2 of a burst: with the metadata in cache, start loading the entry the flow most
    /// likely has (its tag matches) or will get (a never-used way, else the least recently seen).
    /// Returns the hint for `liveEntry`: `hinted` | the first way whose tag matched, or 0 when
    /// none did (the flow is new and will need Maglev).
    @inlinable @inline(__always)
    public func prefetchEntry(hash: UInt64, now: UInt32) -> UInt8 {
        let b = bucket(hash)
        let m = metadata(b)
        let base = entries + b &* FlowTable.ways
        let matches = tern_match_u16x8(m, tag(hash))
        if matches != 0 {
            let way = matches.trailingZeroBitCount
            tern_prefetch(base + way)
            return FlowTable.hinted | UInt8(truncatingIfNeeded: way)
        }
        tern_prefetch_write(base + replacementWay(m, now: now).way)
        return 0
    }

    /// Marks a hint as naming a way (way 0 included).
    public static let hinted: UInt8 = 8

    /// Where a new flow goes: a never-used way, else the first idled-out one, else the least
    /// recently seen (`evicts`).
    @inlinable @inline(__always)
    func replacementWay(_ m: UnsafeMutableRawPointer, now: UInt32) -> (way: Int, evicts: Bool) {
        let unused = tern_match_u16x8(m, 0)
        if unused != 0 { return (unused.trailingZeroBitCount, false) }
        let r = tern_replacement_way(m + FlowTable.seenOffset, m + FlowTable.classOffset, timeouts, now)
        return (Int(r & 0xFF), r & 0x100 != 0)
    }

    @inlinable @inline(__always)
    func isLive(_ m: UnsafeMutableRawPointer, _ way: Int, seen: UInt32, now: UInt32) -> Bool {
        now &- seen <= timeout(class: m.load(fromByteOffset: FlowTable.classOffset &+ way, as: UInt8.self))
    }

    @inlinable @inline(__always)
    func timeout(class c: UInt8) -> UInt32 { timeouts[Int(c & 3)] }

    /// The common lookup, settled without tags: the flow is live at the way `hint` names (what
    /// `prefetchEntry` said a stage earlier). Returns its entry index, marked seen `now`, or -1
    /// for anything else (no hint; another key there, as after an insert earlier in the burst;
    /// idled out), which `probe` then decides: a stale hint costs time, never a wrong answer.
    @inlinable @inline(__always)
    public func liveEntry(_ t: FiveTuple, hash: UInt64, hint: UInt8, now: UInt32) -> Int {
        if hint & FlowTable.hinted == 0 { return -1 }
        let b = bucket(hash)
        let way = Int(hint) & (FlowTable.ways - 1)
        let index = b &* FlowTable.ways &+ way
        if !entries[index].matches(t) || !touchIfLive(metadata(b), way, now: now, touch: true) { return -1 }
        return index
    }

    /// Finds the flow, or where a new one should go. A matching entry that has idled out counts as
    /// not found and its place is reused, so a flow never has two entries. With `touch`, a live
    /// flow found is marked seen `now` (the packet path's lookup: the bucket is at hand here).
    @inlinable @inline(__always)
    public mutating func probe(_ t: FiveTuple, hash: UInt64, now: UInt32, touch: Bool = false) -> FlowProbe {
        let b = bucket(hash)
        let m = metadata(b)
        let wanted = tag(hash)
        let base = b &* FlowTable.ways
        // Tags first (one SIMD compare): an established flow reads only its own entry.
        var matches = tern_match_u16x8(m, wanted)
        while matches != 0 {
            let way = matches.trailingZeroBitCount
            if entries[base &+ way].matches(t) {
                let live = touchIfLive(m, way, now: now, touch: touch)
                if !live { block.add(CounterSlot.flowsExpired) }
                return FlowProbe(index: base &+ way, found: live, evicts: false)
            }
            matches &= matches &- 1
        }
        let r = replacementWay(m, now: now)
        return FlowProbe(index: base &+ r.way, found: false, evicts: r.evicts)
    }

    /// Whether the flow at `way` of bucket metadata `m` is live; with `touch`, it is marked seen `now`.
    @inlinable @inline(__always)
    func touchIfLive(_ m: UnsafeMutableRawPointer, _ way: Int, now: UInt32, touch: Bool) -> Bool {
        let seen = m.load(fromByteOffset: FlowTable.seenOffset &+ way &* 4, as: UInt32.self)
        if !isLive(m, way, seen: seen, now: now) { return false }
        if touch { m.storeBytes(of: now, toByteOffset: FlowTable.seenOffset &+ way &* 4, as: UInt32.self) }
        return true
    }

    /// A TCP flow saw FIN or RST: from now on it lives `tcpClosingTimeout` after its last packet.
    @inlinable @inline(__always)
    public func markClosing(_ index: Int) {
        metadata(FlowTable.bucket(ofEntry: index)).storeBytes(
            of: 2, toByteOffset: FlowTable.classOffset &+ (index & (FlowTable.ways - 1)), as: UInt8.self)
    }

    /// Records a new flow where `probe` said.
    @inlinable @inline(__always)
    public mutating func insert(
        _ t: FiveTuple, at p: FlowProbe, hash: UInt64, backend: IPAddress, slot: BackendSlot, generation: UInt32, now: UInt32
    ) {
        block.add(CounterSlot.flowsInserted)
        if p.evicts { block.add(CounterSlot.flowsEvicted) }
        entries[p.index] = FlowEntry(
            sourceHigh: t.sourceHigh, sourceLow: t.sourceLow,
            destinationHigh: t.destinationHigh, destinationLow: t.destinationLow,
            portsAndProtocol: t.portsAndProtocol, backendHigh: backend.high, backendLow: backend.low, backendIsV6: backend.isV6,
            generation: generation, backendSlot: slot)
        let m = metadata(FlowTable.bucket(ofEntry: p.index))
        let way = p.index & (FlowTable.ways - 1)
        m.storeBytes(of: tag(hash), toByteOffset: way &* 2, as: UInt16.self)
        m.storeBytes(of: now, toByteOffset: FlowTable.seenOffset &+ way &* 4, as: UInt32.self)
        m.storeBytes(of: t.ipProtocol == IPProtocol.tcp ? 0 : 1, toByteOffset: FlowTable.classOffset &+ way, as: UInt8.self)
    }

    /// Live flows (walks the whole table; for stats, not the packet path).
    public func liveCount(now: UInt32) -> Int { liveCount(buckets: 0..<(bucketMask + 1), now: now) }

    /// Live flows in some buckets.
    func liveCount(buckets: Range<Int>, now: UInt32) -> Int {
        var n = 0
        for b in buckets {
            let m = metadata(b)
            for way in 0..<FlowTable.ways where m.load(fromByteOffset: way * 2, as: UInt16.self) != 0 {
                let seen = m.load(fromByteOffset: FlowTable.seenOffset + way * 4, as: UInt32.self)
                if isLive(m, way, seen: seen, now: now) { n += 1 }
            }
        }
        return n
    }

    /// One step of a pass over the table counting live flows: the next `step` buckets. Returns the
    /// pass's count when this step ends it. The table's own worker runs it between bursts
    /// (`tern_flow_table_entries`), so no other thread reads the table.
    public mutating func survey(step: Int, now: UInt32) -> Int? {
        let end = min(surveyCursor + step, bucketMask + 1)
        surveyTally += liveCount(buckets: surveyCursor..<end, now: now)
        guard end > bucketMask else {
            surveyCursor = end
            return nil
        }
        defer { (surveyCursor, surveyTally) = (0, 0) }
        return surveyTally
    }
}
