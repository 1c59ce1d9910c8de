// The forwarding snapshot: everything a worker needs to place a packet, built once per config and
// never changed afterwards (its packet counters aside), so workers share it without locks.

import CFastPath
import TernMetrics
import TernWire

public enum Encapsulation: UInt8, Sendable {
    /// IP in IP: IPv4 outer (protocol 4 or 41) or IPv6 outer (next header 4 or 41).
    case ipip
    /// GUE variant 0 over UDP.
    case gue
}

/// What a snapshot is built from: one entry per VIP. Backend order does not matter.
public struct ServiceSpec: Sendable {
    public var address: IPAddress
    /// 0 means every port of `ipProtocol`.
    public var port: UInt16
    public var ipProtocol: UInt8
    public var encapsulation: Encapsulation
    public var guePort: UInt16
    public var backends: [(address: IPAddress, weight: Int)]
    /// Per backend (same order), the stable id its counters are kept under across reloads
    /// (`CounterIDs`); nil: numbered by position in the snapshot.
    public var counterIDs: [Int]?
    /// Enough live backends (`min_healthy`): its address answers pings (and is announced).
    public var isUp = true
    /// What Maglev hashes for a new flow (`vip.hash`).
    public var hashMode = FlowHash.Mode.fiveTuple
    /// Every address the service answers on: `address`, or a CIDR VIP's prefix.
    public var addresses: [IPAddress]
    /// A QUIC VIP: new flows whose connection ID names a backend's server id go to it.
    public var quic = false
    /// Backends' QUIC server ids, by address (whatever backends a snapshot keeps).
    public var quicServerIDs: [IPAddress: UInt32] = [:]
    /// TCP SYNs opening a connection have their MSS option lowered to what the tunnel carries (`vip.clamp_mss`).
    public var clampMSS = false
    /// Second chance (`vip.second_chance`, GUE TCP VIPs): a packet of a flow this node does not
    /// know, which the VIP's previous table gave another backend, carries that one as a second hop.
    public var secondChance = false

    public init(
        address: IPAddress, port: UInt16, ipProtocol: UInt8, encapsulation: Encapsulation, guePort: UInt16 = 0,
        backends: [(address: IPAddress, weight: Int)], counterIDs: [Int]? = nil
    ) {
        self.address = address
        self.addresses = [address]
        self.port = port
        self.ipProtocol = ipProtocol
        self.encapsulation = encapsulation
        self.guePort = guePort
        self.backends = backends
        self.counterIDs = counterIDs
    }

    public var name: String { serviceName(address: address, port: port, ipProtocol: ipProtocol) }
}

public struct SnapshotSpec: Sendable {
    public var services: [ServiceSpec]
    public var tableSize: Int
    public var tunnelSourceV4: IPAddress?
    public var tunnelSourceV6: IPAddress?

    public init(services: [ServiceSpec], tableSize: Int, tunnelSourceV4: IPAddress?, tunnelSourceV6: IPAddress?) {
        self.services = services
        self.tableSize = tableSize
        self.tunnelSourceV4 = tunnelSourceV4
        self.tunnelSourceV6 = tunnelSourceV6
    }
}

/// `192.0.2.10:80/tcp` or `[2001:db8::1]:0/udp`: how configs, logs and stats name a VIP.
public func serviceName(address: IPAddress, port: UInt16, ipProtocol: UInt8) -> String {
    let a = address.isV6 ? "[\(address)]" : "\(address)"
    let proto = ipProtocol == IPProtocol.tcp ? "tcp" : ipProtocol == IPProtocol.udp ? "udp" : "proto\(ipProtocol)"
    return "\(a):\(port)/\(proto)"
}

/// One VIP's Maglev table, shared by every VIP and every snapshot with the same backends, weights
/// and size: a reload or a health change builds only the tables whose inputs changed, and VIPs
/// with the same backends (port 80 and 443, say) hold one table. Never written after its build.
public final class MaglevTable: @unchecked Sendable {
    public let slots: UnsafeMutableBufferPointer<UInt16>

    init(size: Int) { slots = .allocate(capacity: size) }

    deinit { slots.deallocate() }
}

/// What a Maglev table is a function of: the table size and the backends (address order) with
/// their weights.
public struct MaglevTableKey: Hashable, Sendable {
    public struct Backend: Hashable, Sendable {
        var address: IPAddress
        var weight: Int
    }

    /// One multiply-xor pass over the backends, done once when the key is made: a reload puts
    /// every VIP's key in the next snapshot's table cache, and hashing them all again (SipHash per
    /// backend at first, then this pass) was the largest cost after the changed tables. Compared
    /// first, so unequal keys rarely compare their backends.
    let digest: UInt64
    let tableSize: Int
    let backends: [Backend]

    init(tableSize: Int, backends: [Backend]) {
        var x = UInt64(truncatingIfNeeded: tableSize) &* 0x9E37_79B9_7F4A_7C15
        for b in backends {
            x =
                (x ^ b.address.high ^ b.address.low &* 0xC2B2_AE3D_27D4_EB4F ^ UInt64(truncatingIfNeeded: b.weight) << 1)
                &* 0x9E37_79B9_7F4A_7C15
            x ^= x >> 29
        }
        digest = x
        self.tableSize = tableSize
        self.backends = backends
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(digest) }
}

/// A VIP's Maglev table before the last change of its backends, weights or states, and the
/// addresses its slots name (the backends of then, in address order): second chance.
public final class PreviousTable: @unchecked Sendable {
    let table: MaglevTable
    let addresses: UnsafeMutableBufferPointer<IPAddress>

    init(table: MaglevTable, key: MaglevTableKey) {
        self.table = table
        addresses = .allocate(capacity: max(1, key.backends.count))
        for (i, b) in key.backends.enumerated() { addresses.initializeElement(at: i, to: b.address) }
    }

    deinit { addresses.deallocate() }
}

/// What the packet path reads of a VIP's previous table (both nil: none, or second chance off).
public struct SecondChanceRecord: @unchecked Sendable {
    public var table: UnsafePointer<UInt16>?
    public var addresses: UnsafePointer<IPAddress>?
}

/// A VIP's identity across snapshots: (address, port, protocol).
public struct ServiceID: Hashable, Sendable {
    var address: IPAddress
    var port: UInt16
    var ipProtocol: UInt8

    init(_ s: ServiceSpec) {
        address = s.address
        port = s.port
        ipProtocol = s.ipProtocol
    }
}

/// What one VIP's backend records and templates were built from, and where they are.
public struct BuiltService: Sendable {
    let backends: [(address: IPAddress, weight: Int)]
    let counterIDs: [Int]?
    let encapsulation: Encapsulation
    let guePort: UInt16
    let innerIsV6: Bool
    /// The backends' order by address (index into `backends`).
    let order: [Int]
    let firstBackend: Int
    let table: MaglevTable
    let tableKey: MaglevTableKey

    init(_ s: ServiceSpec, order: [Int], firstBackend: Int, table: MaglevTable, tableKey: MaglevTableKey) {
        backends = s.backends
        counterIDs = s.counterIDs
        encapsulation = s.encapsulation
        guePort = s.guePort
        innerIsV6 = s.address.isV6
        self.order = order
        self.firstBackend = firstBackend
        self.table = table
        self.tableKey = tableKey
    }

    /// Whether `s` would build the same records, templates and table.
    func builds(_ s: ServiceSpec) -> Bool {
        // Without stable counter ids, ids are positions in the snapshot: nothing to copy.
        guard s.counterIDs != nil, s.encapsulation == encapsulation, s.guePort == guePort, s.address.isV6 == innerIsV6,
            s.counterIDs == counterIDs,
            s.backends.count == backends.count
        else { return false }
        for i in backends.indices where backends[i].address != s.backends[i].address || backends[i].weight != s.backends[i].weight
        {
            return false
        }
        return true
    }
}

/// One VIP as the packet path sees it.
public struct VIPRecord: @unchecked Sendable {  // `table` points into a MaglevTable its snapshot holds
    public var address: IPAddress
    public var port: UInt16
    public var ipProtocol: UInt8
    public var encapsulation: Encapsulation
    public var guePort: UInt16
    /// This VIP's backends are `backends[firstBackend ..< firstBackend + backendCount]`, in address order.
    public var firstBackend: Int
    public var backendCount: Int
    /// This VIP's Maglev table (`tableSize` slots), kept alive by the snapshot's `tableCache`.
    public var table: UnsafePointer<UInt16>
    /// For a UDP VIP with GUE encapsulation, `gueGuardFlag | gue_port`: a packet to that port would
    /// be GUE inside GUE at the backend and is dropped. 0 for every other VIP (never matches).
    public var gueGuard: UInt32

    public static let gueGuardFlag: UInt32 = 0x1_0000
    /// What Maglev hashes for a new flow of this VIP.
    public var hashMode: FlowHash.Mode
    /// What a new flow's placement does besides Maglev (one byte: a field more in the record cost
    /// established packets an instruction).
    public var placement: Placement
    /// A new flow is placed by Maglev over the whole 5-tuple (no hash mode, QUIC or MSS clamp):
    /// the placement's one test.
    public var plainPlacement: Bool

    public struct Placement: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// New flows read the QUIC connection ID first (`vip.quic`).
        public static let quic = Placement(rawValue: 1)
        /// A new connection's SYN gets its MSS option clamped (`vip.clamp_mss`).
        public static let clampMSS = Placement(rawValue: 2)
    }

    public var quic: Bool { placement.contains(.quic) }
    public var clampMSS: Bool { placement.contains(.clampMSS) }

    init(
        address: IPAddress, port: UInt16, ipProtocol: UInt8, encapsulation: Encapsulation, guePort: UInt16, firstBackend: Int,
        backendCount: Int, table: UnsafePointer<UInt16>, gueGuard: UInt32, hashMode: FlowHash.Mode, quic: Bool,
        clampMSS: Bool
    ) {
        self.address = address
        self.port = port
        self.ipProtocol = ipProtocol
        self.encapsulation = encapsulation
        self.guePort = guePort
        self.firstBackend = firstBackend
        self.backendCount = backendCount
        self.table = table
        self.gueGuard = gueGuard
        self.hashMode = hashMode
        placement = [quic ? .quic : [], clampMSS ? .clampMSS : []]
        plainPlacement = hashMode == .fiveTuple && placement.isEmpty
    }

    public var name: String { serviceName(address: address, port: port, ipProtocol: ipProtocol) }
}

public struct BackendRecord: Sendable {
    public var address: IPAddress
    public var weight: Int
    /// The stable id of this VIP's backend: what its counters are added to when the snapshot retires.
    public var counterID: Int
}

/// A backend as a VIP's flow table entries name it: its position among the VIP's backends.
public typealias BackendSlot = UInt16

public struct ForwardingSnapshot: ~Copyable {
    /// Tells flow-table entries written under an older snapshot from current ones.
    public let generation: UInt32
    public let tableSize: Int
    public let tunnelSourceV4: IPAddress
    public let tunnelSourceV6: IPAddress
    public let vips: UnsafeMutableBufferPointer<VIPRecord>
    public let backends: UnsafeMutableBufferPointer<BackendRecord>
    /// The Maglev tables the VIPs point into, by what they were built from (the next build's
    /// `reusing`). Control side only.
    public let tableCache: [MaglevTableKey: MaglevTable]
    /// How many tables this snapshot built (the rest came from `reusing` or were shared).
    public let tablesBuilt: Int
    /// What each VIP's part was built from (the next build's `previous` copies unchanged VIPs).
    /// Control side only.
    public let builtServices: [ServiceID: BuiltService]
    /// Per VIP (same index as `vips`): its previous table, for second chance. Read only by the
    /// placement of flows the node does not know.
    public let secondChances: UnsafeMutableBufferPointer<SecondChanceRecord>
    /// The previous tables by VIP, kept alive here; the next build carries them. Control side only.
    public let previousTables: [ServiceID: PreviousTable]
    /// Per backend (same index as `backends`), its `EncapTemplate`: 64 bytes, cache-line aligned.
    public let templates: UnsafeMutableRawPointer
    public let vipMap: VIPMap
    /// QUIC server ids of the VIPs' backends.
    @usableFromInline let quicServers: KeyMap
    /// Per worker: packets and bytes side by side per backend (`2b`, `2b + 1`; `b` indexes
    /// `backends`: one cache line for both), then new flows per backend (`2n + b`), each worker's
    /// block on its own cache lines. A VIP's figures are the sums over its backends.
    public let counters: Counters
    public let counterStride: Int
    public let workerCount: Int

    /// Builds the snapshot; VIPs keep the spec's order, each VIP's backends are sorted by address.
    public init(_ spec: SnapshotSpec, generation: UInt32, workers: Int = 1) {
        self.init(spec, generation: generation, workers: workers, shouldStop: { false })!
    }

    /// The same, or nil when `shouldStop` (asked while the Maglev tables are built) says to give up:
    /// a reload that takes seconds must not hold back a SIGTERM. Tables found in `reusing` (the
    /// running snapshot's `tableCache`) are shared, not built again.
    public init?(
        _ spec: SnapshotSpec, generation: UInt32, workers: Int = 1, reusing: [MaglevTableKey: MaglevTable] = [:],
        previous: UnsafePointer<ForwardingSnapshot>? = nil, shouldStop: () -> Bool
    ) {
        let services = spec.services
        let sources = (spec.tunnelSourceV4 ?? IPAddress(v4: 0), spec.tunnelSourceV6 ?? IPAddress(high: 0, low: 0, isV6: true))
        let reusing = previous?.pointee.tableCache ?? reusing
        // A VIP built from the same inputs as in `previous` (most VIPs of a reload) is copied from
        // it: no sort, no table key, no templates to prepare.
        let copied: [BuiltService?] = services.map { s in
            guard let p = previous, p.pointee.tunnelSourceV4 == sources.0, p.pointee.tunnelSourceV6 == sources.1,
                p.pointee.tableSize == spec.tableSize, let b = p.pointee.builtServices[ServiceID(s)], b.builds(s)
            else { return nil }
            return b
        }
        let order = services.indices.map { i in
            copied[i]?.order
                ?? services[i].backends.indices.sorted { services[i].backends[$0].address < services[i].backends[$1].address }
        }
        var cache: [MaglevTableKey: MaglevTable] = [:]
        cache.reserveCapacity(services.count)
        var vipTables: [MaglevTable] = []
        vipTables.reserveCapacity(services.count)
        var tableKeys: [MaglevTableKey] = []
        tableKeys.reserveCapacity(services.count)
        var built = 0
        for (i, s) in services.enumerated() {
            if let b = copied[i] {
                cache[b.tableKey] = b.table
                vipTables.append(b.table)
                tableKeys.append(b.tableKey)
                continue
            }
            let sorted = order[i].map { s.backends[$0] }
            let key = MaglevTableKey(
                tableSize: spec.tableSize, backends: sorted.map { .init(address: $0.address, weight: $0.weight) })
            tableKeys.append(key)
            if let table = cache[key] ?? reusing[key] {
                cache[key] = table
                vipTables.append(table)
                continue
            }
            let table = MaglevTable(size: spec.tableSize)
            guard Maglev.build(backends: sorted, into: table.slots, shouldStop: shouldStop) else { return nil }
            cache[key] = table
            vipTables.append(table)
            built += 1
        }
        tableCache = cache
        tablesBuilt = built
        self.generation = generation
        self.tableSize = spec.tableSize
        (self.tunnelSourceV4, self.tunnelSourceV6) = sources
        let backendTotal = services.reduce(0) { $0 + $1.backends.count }
        vips = .allocate(capacity: services.count)
        // Records and templates are mapped directly, on 2 MiB pages where they are that big (100,000
        // backends: 4 and 6 MiB), in mappings a retired snapshot left where one fits (every byte
        // is written below): no page faults for a reload, fewer TLB misses for the workers.
        guard let b = KeptMappings.shared.allocate(Self.recordBytes(backendTotal), zeroed: false) else {
            fatalError("out of memory for backend records")
        }
        backends = UnsafeMutableBufferPointer(
            start: b.bindMemory(to: BackendRecord.self, capacity: max(1, backendTotal)), count: backendTotal)
        guard let t = KeptMappings.shared.allocate(Self.templateBytes(backendTotal), zeroed: false) else {
            fatalError("out of memory for templates")
        }
        templates = t
        var builtServices: [ServiceID: BuiltService] = [:]
        builtServices.reserveCapacity(services.count)
        var next = 0
        for (i, service) in services.enumerated() {
            let count = service.backends.count
            if let b = copied[i], let p = previous {
                (backends.baseAddress! + next).initialize(from: p.pointee.backends.baseAddress! + b.firstBackend, count: count)
                (templates + next * EncapTemplate.size).copyMemory(
                    from: p.pointee.templates + b.firstBackend * EncapTemplate.size, byteCount: count * EncapTemplate.size)
            } else {
                for (j, original) in order[i].enumerated() {
                    let backend = service.backends[original]
                    let id = service.counterIDs.map { $0[original] } ?? next + j
                    backends.initializeElement(
                        at: next + j, to: BackendRecord(address: backend.address, weight: backend.weight, counterID: id))
                    EncapTemplate.prepare(
                        at: templates + (next + j) * EncapTemplate.size,
                        source: backend.address.isV6 ? sources.1 : sources.0, destination: backend.address,
                        innerIsV6: service.address.isV6, guePort: service.encapsulation == .gue ? service.guePort : nil)
                }
            }
            builtServices[ServiceID(service)] = BuiltService(
                service, order: order[i], firstBackend: next, table: vipTables[i], tableKey: tableKeys[i])
            vips.initializeElement(
                at: i,
                to: VIPRecord(
                    address: service.address, port: service.port, ipProtocol: service.ipProtocol,
                    encapsulation: service.encapsulation, guePort: service.guePort,
                    firstBackend: next, backendCount: count, table: UnsafePointer(vipTables[i].slots.baseAddress!),
                    gueGuard: service.encapsulation == .gue && service.ipProtocol == IPProtocol.udp
                        ? VIPRecord.gueGuardFlag | UInt32(service.guePort) : 0, hashMode: service.hashMode, quic: service.quic,
                    clampMSS: service.clampMSS))
            next += count
        }
        self.builtServices = builtServices
        // Second chance: a VIP whose table changed keeps the running one as its previous; one
        // whose table did not keeps the previous it had.
        var previousTables: [ServiceID: PreviousTable] = [:]
        secondChances = .allocate(capacity: max(1, services.count))
        for (i, service) in services.enumerated() {
            let id = ServiceID(service)
            var kept: PreviousTable?
            if let p = previous, p.pointee.tableSize == spec.tableSize, let old = p.pointee.builtServices[id] {
                kept =
                    old.tableKey == tableKeys[i]
                    ? p.pointee.previousTables[id] : PreviousTable(table: old.table, key: old.tableKey)
            }
            previousTables[id] = kept
            let used = service.secondChance ? kept : nil
            secondChances.initializeElement(
                at: i,
                to: SecondChanceRecord(
                    table: used.map { UnsafePointer($0.table.slots.baseAddress!) },
                    addresses: used.map { UnsafePointer($0.addresses.baseAddress!) }))
        }
        self.previousTables = previousTables
        vipMap = VIPMap(services)
        // (VIP, server id) to the backend's slot among the VIP's (sorted) backends.
        quicServers = KeyMap(
            services.indices.filter { !services[$0].quicServerIDs.isEmpty }.flatMap { i in
                order[i].enumerated().compactMap { slot, original -> (MapKey, Int32)? in
                    services[i].quicServerIDs[services[i].backends[original].address].map {
                        (MapKey(quicServer: $0, vip: i), Int32(slot))
                    }
                }
            })
        workerCount = workers
        counterStride = (3 * backendTotal + 7) & ~7
        guard let c = KeptMappings.shared.allocate(Self.counterBytes(counterStride * workers), zeroed: true) else {
            fatalError("out of memory for counters")
        }
        counters = Counters(zeroedMemory: c, count: max(1, counterStride * workers))
    }

    deinit {
        vips.deallocate()
        secondChances.deallocate()
        KeptMappings.shared.free(backends.baseAddress, Self.recordBytes(backends.count))
        KeptMappings.shared.free(templates, Self.templateBytes(backends.count))
        vipMap.deallocate()
        quicServers.deallocate()
        KeptMappings.shared.free(counters.base, Self.counterBytes(counters.count))
    }

    /// Maps, faults in and keeps memory for one more snapshot of this one's size: the first
    /// reload after start then writes into pages that exist, as every later one does (it costs
    /// what the kept mappings hold anyway once a snapshot has been retired).
    public func reserveNextBuild() {
        KeptMappings.shared.reserve(Self.recordBytes(backends.count))
        KeptMappings.shared.reserve(Self.templateBytes(backends.count))
        KeptMappings.shared.reserve(Self.counterBytes(counters.count))
    }

    static func recordBytes(_ backends: Int) -> Int { max(1, backends) * MemoryLayout<BackendRecord>.stride }
    static func templateBytes(_ backends: Int) -> Int { max(1, backends) * EncapTemplate.size }
    static func counterBytes(_ count: Int) -> Int { max(1, count) * MemoryLayout<UInt64>.stride }

    /// The VIP for a destination: the VIP with that address, port and protocol, else the port-0
    /// VIP of that address and protocol; -1 when there is none.
    @inlinable @inline(__always)
    public func findVIP(address: IPAddress, port: UInt16, ipProtocol: UInt8) -> Int {
        vipMap.find(address: address, port: port, ipProtocol: ipProtocol)
    }

    /// Whether some VIP uses this address (traffic to it is Tern's, even when no VIP serves it).
    @inlinable @inline(__always)
    public func isVIPAddress(_ address: IPAddress) -> Bool { vipMap.isVIPAddress(address) }

    /// Whether some VIP on this address is up: a VIP that is down does not answer pings.
    public func isUpVIPAddress(_ address: IPAddress) -> Bool { vipMap.addressState(address) > 0 }

    /// -1: no VIP uses the address; 0: VIPs do, none up; above 0: some VIP on it is up. One probe
    /// for both questions of traffic no VIP serves.
    @inlinable @inline(__always)
    public func vipAddressState(_ address: IPAddress) -> Int { vipMap.addressState(address) }

    /// The VIP whose backends take fragmented echo requests to an address: its first VIP that is
    /// up (configuration order, so every node picks the same one), or -1.
    public func echoVIP(_ address: IPAddress) -> Int { max(-1, vipMap.addressState(address) - 1) }

    /// The outer headers toward a backend (see `EncapTemplate`).
    @inlinable @inline(__always)
    public func template(backend: Int) -> UnsafeRawPointer { UnsafeRawPointer(templates + backend &* EncapTemplate.size) }

    /// A VIP's Maglev table: per slot, the index of its backend among the VIP's, or `Maglev.emptySlot`.
    public func table(vip: Int) -> UnsafeBufferPointer<UInt16> { UnsafeBufferPointer(start: vips[vip].table, count: tableSize) }

    /// The backend slot Maglev picks for a flow hash, or `Maglev.emptySlot`.
    @inlinable @inline(__always)
    public func maglevSlot(vip: Int, hash: UInt64) -> BackendSlot {
        vips[vip].table[Maglev.slot(forHash: hash, tableSize: tableSize)]
    }

    /// The backend a VIP's previous table gave a flow hash, when the VIP has second chance and a
    /// previous table (else nil).
    @inlinable
    public func previousBackend(vip: Int, hash: UInt64) -> IPAddress? {
        let record = secondChances[vip]
        guard let table = record.table, let addresses = record.addresses else { return nil }
        let slot = table[Maglev.slot(forHash: hash, tableSize: tableSize)]
        return slot == Maglev.emptySlot ? nil : addresses[Int(slot)]
    }

    /// Starts loading the Maglev table slot a new flow will read.
    @inlinable @inline(__always)
    public func prefetchMaglevSlot(vip: Int, hash: UInt64) {
        tern_prefetch(vips[vip].table + Maglev.slot(forHash: hash, tableSize: tableSize))
    }

    /// The slot among a VIP's backends of the backend with this QUIC server id, or -1.
    @inlinable
    public func quicBackendSlot(vip: Int, serverID: UInt32) -> Int {
        quicServers.find(MapKey(quicServer: serverID, vip: vip))
    }

    /// The slot of a backend address among a VIP's backends, or nil (slow path after a reload).
    public func slot(of address: IPAddress, vip: Int) -> BackendSlot? {
        let v = vips[vip]
        for i in 0..<v.backendCount where backends[v.firstBackend + i].address == address {
            return BackendSlot(i)
        }
        return nil
    }

    /// A fingerprint of a VIP's running table, so that the nodes behind one ECMP group can check
    /// they route alike: FNV-1a (64-bit) over, for each backend in address order, its address
    /// bytes (4 or 16, network order) and its weight (2 bytes, big-endian), then for each of the M
    /// slots the index of its backend in that order (2 bytes, big-endian; 0xFFFF when empty).
    /// Equal fingerprints mean equal tables and equal backend lists.
    public func fingerprint(vip: Int) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        @inline(__always) func mix(_ byte: UInt8) {
            h ^= UInt64(byte)
            h &*= 0x0000_0100_0000_01B3
        }
        let record = vips[vip]
        for b in record.firstBackend..<(record.firstBackend + record.backendCount) {
            for byte in backends[b].address.bytes { mix(byte) }
            mix(UInt8(truncatingIfNeeded: backends[b].weight >> 8))
            mix(UInt8(truncatingIfNeeded: backends[b].weight))
        }
        for slot in table(vip: vip) {
            mix(UInt8(truncatingIfNeeded: slot >> 8))
            mix(UInt8(truncatingIfNeeded: slot))
        }
        return h
    }

    /// `worker`'s forwarded packets and bytes, by backend (`countForwarded`): a worker takes them
    /// once per burst.
    @inlinable @inline(__always)
    public func forwardedCounters(worker: Int) -> Counters { counters.dropFirst(worker &* counterStride) }

    /// Adds one packet forwarded to `backend` and its IP length (the client's packet, before
    /// encapsulation, as IPVS counts) to a worker's `forwardedCounters`.
    @inlinable @inline(__always)
    public static func countForwarded(_ counters: Counters, backend: Int, bytes: Int32) {
        counters.add(backend &<< 1)
        counters.add(backend &<< 1 &+ 1, UInt64(truncatingIfNeeded: bytes))
    }

    /// Adds one flow Maglev placed on a backend (a flow-table miss) in `worker`'s block.
    @inlinable @inline(__always)
    public func countNewFlow(worker: Int, backend: Int) {
        counters.add(worker &* counterStride &+ 2 &* backends.count &+ backend)
    }

    /// Packets forwarded, flows placed and bytes forwarded per backend (index into `backends`),
    /// summed over workers; live while workers run.
    public func backendTotals() -> (packets: [UInt64], newFlows: [UInt64], bytes: [UInt64]) {
        let n = backends.count
        var packets = [UInt64](repeating: 0, count: n)
        var newFlows = [UInt64](repeating: 0, count: n)
        var bytes = [UInt64](repeating: 0, count: n)
        for w in 0..<workerCount {
            let block = w * counterStride
            for i in 0..<n {
                packets[i] += counters.load(block + 2 * i)
                bytes[i] += counters.load(block + 2 * i + 1)
                newFlows[i] += counters.load(block + 2 * n + i)
            }
        }
        return (packets, newFlows, bytes)
    }
}

/// Stable ids for the (VIP, backend) pairs of successive configs, so that a backend's counters
/// carry on across reloads whatever its position in each snapshot. Ids are never reused: a pair
/// that leaves the config keeps its id (and its totals) should it come back.
public struct CounterIDs: Sendable {
    public struct Key: Hashable, Sendable {
        public var vip: String
        public var address: IPAddress
    }

    public private(set) var keys: [Key] = []
    var ids: [Key: Int] = [:]
    /// Per VIP, the backend addresses last assigned and their ids: a VIP whose backends did not
    /// change (most of them, in a reload) reuses its ids without a lookup per backend.
    var lastAssigned: [ServiceID: (backends: [(address: IPAddress, weight: Int)], ids: [Int])] = [:]

    public init() {}

    public mutating func id(vip: String, address: IPAddress) -> Int {
        let key = Key(vip: vip, address: address)
        if let id = ids[key] { return id }
        ids[key] = keys.count
        keys.append(key)
        return keys.count - 1
    }

    /// The spec with every backend's stable id filled in.
    public mutating func assign(_ spec: SnapshotSpec) -> SnapshotSpec {
        var spec = spec
        var assignedNow: [ServiceID: (backends: [(address: IPAddress, weight: Int)], ids: [Int])] = [:]
        assignedNow.reserveCapacity(spec.services.count)
        for i in spec.services.indices {
            let s = spec.services[i]
            let key = ServiceID(s)
            if let last = lastAssigned[key], last.backends.count == s.backends.count,
                !zip(last.backends, s.backends).contains(where: { $0.address != $1.address })
            {
                spec.services[i].counterIDs = last.ids
            } else {
                let name = s.name
                spec.services[i].counterIDs = s.backends.map { id(vip: name, address: $0.address) }
            }
            assignedNow[key] = (s.backends, spec.services[i].counterIDs!)
        }
        lastAssigned = assignedNow  // VIPs gone from the config are forgotten here (their ids stay)
        return spec
    }
}
