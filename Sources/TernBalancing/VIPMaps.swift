// Open-addressing hash maps from a destination to its VIP, built once per snapshot. Capacity is a
// power of two at least twice the entries, so probes stay short and end at an empty slot. The
// hash is CRC32C over the key's words (two SSE4.2 instructions for an IPv4 key; the maps are
// private to a snapshot, so it need not be the documented flow hash, only cheap and well spread
// over the low bits a slot is taken from). Keys come from the configuration, so packets cannot
// lengthen a probe: at worst one walks a cluster the configuration made.

import CFastPath
import TernWire

/// A map key: an address and a third word (port, protocol and address family).
@usableFromInline
struct MapKey: Equatable {
    @usableFromInline var high: UInt64
    @usableFromInline var low: UInt64
    @usableFromInline var rest: UInt64

    @inlinable @inline(__always)
    init(_ a: IPAddress, port: UInt16 = 0, ipProtocol: UInt8 = 0) {
        high = a.high
        low = a.low
        rest = UInt64(port) << 16 | UInt64(ipProtocol) << 8 | (a.isV6 ? 6 : 4)
    }

    /// A QUIC server id of a VIP's backend (its own kind of key: family word 0x51).
    @inlinable
    init(quicServer id: UInt32, vip: Int) {
        high = UInt64(truncatingIfNeeded: vip)
        low = UInt64(id)
        rest = 0x51
    }

    @inlinable @inline(__always)
    func slot(mask: Int) -> Int {
        // The address's halves folded into one word: the key compare tells apart what this merges.
        Int(tern_crc32c_u64(tern_crc32c_u64(0, high ^ low), rest)) & mask
    }
}

/// One slot of a map: a key and its value (VIP index), -1 when the slot is empty.
@usableFromInline
struct MapSlot {
    @usableFromInline var key: MapKey
    @usableFromInline var value: Int32
}

/// Fixed-capacity open addressing with linear probing; filled once, then only read.
@usableFromInline
struct KeyMap {
    @usableFromInline let slots: UnsafeMutableBufferPointer<MapSlot>
    @usableFromInline let mask: Int

    init(_ entries: [(MapKey, Int32)]) {
        var capacity = 8
        while capacity < entries.count * 2 { capacity <<= 1 }
        slots = .allocate(capacity: capacity)
        slots.initialize(repeating: MapSlot(key: MapKey(IPAddress(v4: 0)), value: -1))
        mask = capacity - 1
        for (key, value) in entries where find(key) < 0 {
            var slot = key.slot(mask: mask)
            while slots[slot].value >= 0 { slot = (slot + 1) & mask }
            slots[slot] = MapSlot(key: key, value: value)
        }
    }

    func deallocate() { slots.deallocate() }

    /// The value stored for `key`, or -1.
    @inlinable @inline(__always)
    func find(_ key: MapKey) -> Int {
        var slot = key.slot(mask: mask)
        while true {
            let s = slots[slot]
            if s.value < 0 || s.key == key { return Int(s.value) }
            slot = (slot &+ 1) & mask
        }
    }
}

/// VIP lookup: by (address, port, protocol), with the port-0 VIP of that address and protocol as
/// the fallback; and whether an address is a VIP address at all (for traffic no VIP serves).
public struct VIPMap {
    @usableFromInline let services: KeyMap
    @usableFromInline let addresses: KeyMap
    /// No VIP names a port: skip the exact lookup.
    @usableFromInline let anyPortOnly: Bool

    init(_ services: [ServiceSpec]) {
        // A CIDR VIP: every address of its prefix names the same record.
        self.services = KeyMap(
            services.enumerated().flatMap { i, s in
                s.addresses.map { (MapKey($0, port: s.port, ipProtocol: s.ipProtocol), Int32(i)) }
            })
        // Per address: 1 + the index of its first VIP that is up (answers pings, takes fragmented
        // echo requests), else 0.
        var up: [IPAddress: Int32] = [:]
        for (i, s) in services.enumerated() {
            for a in s.addresses where up[a] ?? 0 == 0 { up[a] = s.isUp ? Int32(i + 1) : 0 }
        }
        addresses = KeyMap(up.map { (MapKey($0.key), $0.value) })
        anyPortOnly = services.allSatisfy { $0.port == 0 }
    }

    func deallocate() {
        services.deallocate()
        addresses.deallocate()
    }

    /// The VIP index for a destination, or -1 when no VIP serves it.
    @inlinable @inline(__always)
    public func find(address: IPAddress, port: UInt16, ipProtocol: UInt8) -> Int {
        if !anyPortOnly {
            let exact = services.find(MapKey(address, port: port, ipProtocol: ipProtocol))
            if exact >= 0 { return exact }
        }
        if ipProtocol != IPProtocol.tcp && ipProtocol != IPProtocol.udp { return -1 }
        return services.find(MapKey(address, port: 0, ipProtocol: ipProtocol))
    }

    /// Whether some VIP uses this address.
    @inlinable @inline(__always)
    public func isVIPAddress(_ address: IPAddress) -> Bool {
        addresses.find(MapKey(address)) >= 0
    }

    /// -1: not a VIP address; 0: no VIP on it is up; above 0: some VIP on it is up (pings
    /// answered), the first of them (in configuration order) is `addressState - 1`.
    @inlinable @inline(__always)
    public func addressState(_ address: IPAddress) -> Int {
        addresses.find(MapKey(address))
    }
}
