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

    var tableSize: Int
    var backends: [Backend]
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
    /// New flows read the QUIC connection ID first (`vip.quic`).
    public var quic: Bool
    /// A new flow is placed by Maglev over the whole 5-tuple (no hash mode, no QUIC): the
    /// placement's one test.
    public var plainPlacement: Bool

    init(
        address: IPAddress, port: UInt16, ipProtocol: UInt8, encapsulation: Encapsulation, guePort: UInt16, firstBackend: Int,
        backendCount: Int, table: UnsafePointer<UInt16>, gueGuard: UInt32, hashMode: FlowHash.Mode, quic: Bool
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
        self.quic = quic
        plainPlacement = hashMode == .fiveTuple && !quic
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
    /// Per backend (same index as `backends`), its `EncapTemplate`: 64 bytes, cache-line aligned.
    public let templates: UnsafeMutableRawPointer
    public let vipMap: VIPMap
    /// QUIC server ids of the VIPs' backends.
    @usableFromInline let quicServers: KeyMap
    /// Per worker: packets then new flows per backend (same index as `backends`), each worker's
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
        shouldStop: () -> Bool
    ) {
        let services = spec.services
        let order = services.map { s in s.backends.indices.sorted { s.backends[$0].address < s.backends[$1].address } }
        let sortedBackends = services.indices.map { i in order[i].map { services[i].backends[$0] } }
        var cache: [MaglevTableKey: MaglevTable] = [:]
        var vipTables: [MaglevTable] = []
        var built = 0
        for sorted in sortedBackends {
            let key = MaglevTableKey(tableSize: spec.tableSize, backends: sorted.map { .init(address: $0.address, weight: $0.weight) })
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
        self.tunnelSourceV4 = spec.tunnelSourceV4 ?? IPAddress(v4: 0)
        self.tunnelSourceV6 = spec.tunnelSourceV6 ?? IPAddress(high: 0, low: 0, isV6: true)
        let backendTotal = services.reduce(0) { $0 + $1.backends.count }
        vips = .allocate(capacity: services.count)
        backends = .allocate(capacity: backendTotal)
        templates = .allocate(byteCount: max(1, backendTotal) * EncapTemplate.size, alignment: 64)
        var next = 0
        for (i, service) in services.enumerated() {
            let sorted = sortedBackends[i]
            for (j, backend) in sorted.enumerated() {
                let id = service.counterIDs.map { $0[order[i][j]] } ?? next + j
                backends.initializeElement(
                    at: next + j, to: BackendRecord(address: backend.address, weight: backend.weight, counterID: id))
                EncapTemplate.prepare(
                    at: templates + (next + j) * EncapTemplate.size,
                    source: backend.address.isV6 ? tunnelSourceV6 : tunnelSourceV4, destination: backend.address,
                    innerIsV6: service.address.isV6, guePort: service.encapsulation == .gue ? service.guePort : nil)
            }
            vips.initializeElement(
                at: i,
                to: VIPRecord(
                    address: service.address, port: service.port, ipProtocol: service.ipProtocol,
                    encapsulation: service.encapsulation, guePort: service.guePort,
                    firstBackend: next, backendCount: sorted.count, table: UnsafePointer(vipTables[i].slots.baseAddress!),
                    gueGuard: service.encapsulation == .gue && service.ipProtocol == IPProtocol.udp
                        ? VIPRecord.gueGuardFlag | UInt32(service.guePort) : 0, hashMode: service.hashMode, quic: service.quic))
            next += sorted.count
        }
        vipMap = VIPMap(services)
        // (VIP, server id) to the backend's slot among the VIP's (sorted) backends.
        quicServers = KeyMap(
            services.indices.flatMap { i in
                sortedBackends[i].enumerated().compactMap { slot, backend -> (MapKey, Int32)? in
                    services[i].quicServerIDs[backend.address].map { (MapKey(quicServer: $0, vip: i), Int32(slot)) }
                }
            })
        workerCount = workers
        counterStride = (2 * backendTotal + 7) & ~7
        counters = Counters.allocate(count: counterStride * workers)
    }

    deinit {
        vips.deallocate()
        backends.deallocate()
        templates.deallocate()
        vipMap.deallocate()
        quicServers.deallocate()
        counters.deallocate()
    }

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

    /// -1: no VIP uses the address; 0: VIPs do, none up; 1: some VIP on it is up. One probe for
    /// both questions of traffic no VIP serves.
    @inlinable @inline(__always)
    public func vipAddressState(_ address: IPAddress) -> Int { vipMap.addressState(address) }

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

    /// Adds one forwarded packet to a backend's counters in `worker`'s block.
    @inlinable @inline(__always)
    public func countForwarded(worker: Int, backend: Int) {
        counters.add(worker &* counterStride &+ backend)
    }

    /// Adds one flow Maglev placed on a backend (a flow-table miss) in `worker`'s block.
    @inlinable @inline(__always)
    public func countNewFlow(worker: Int, backend: Int) {
        counters.add(worker &* counterStride &+ backends.count &+ backend)
    }

    /// Packets forwarded and flows placed per backend (index into `backends`), summed over workers;
    /// live while workers run.
    public func backendTotals() -> (packets: [UInt64], newFlows: [UInt64]) {
        let n = backends.count
        var packets = [UInt64](repeating: 0, count: n)
        var newFlows = [UInt64](repeating: 0, count: n)
        for w in 0..<workerCount {
            let block = w * counterStride
            for i in 0..<n {
                packets[i] += counters.load(block + i)
                newFlows[i] += counters.load(block + n + i)
            }
        }
        return (packets, newFlows)
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
        for i in spec.services.indices {
            let name = spec.services[i].name
            spec.services[i].counterIDs = spec.services[i].backends.map { id(vip: name, address: $0.address) }
        }
        return spec
    }
}
