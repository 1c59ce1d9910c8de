// Open-addressing hash maps from VIP address (and port and protocol) to VIP, built once per
// snapshot. Capacity is a power of two at least twice the entries, so probes stay short and end at
// an empty slot; the hash is the fixed `FlowHash.mix`.

import TernWire

@inlinable @inline(__always)
public func addressHash(_ a: IPAddress) -> UInt64 {
    FlowHash.mix(a.high &* 0x9E37_79B9_7F4A_7C15 ^ a.low ^ (a.isV6 ? 1 << 63 : 0))
}

func mapCapacity(_ count: Int) -> Int {
    var c = 8
    while c < count * 2 { c <<= 1 }
    return c
}

/// One VIP address: whether VIPs with a specific port use it, and its any-port VIPs.
public struct AddressEntry: Sendable {
    public var address: IPAddress
    public var used: Bool
    public var hasPortVIPs: Bool
    /// VIP index of the port-0 TCP / UDP VIP on this address, or -1.
    public var anyPortTCP: Int32
    public var anyPortUDP: Int32
}

public struct AddressMap {
    public let entries: UnsafeMutableBufferPointer<AddressEntry>
    public let mask: Int

    init(_ services: [ServiceSpec]) {
        let capacity = mapCapacity(services.count)
        entries = .allocate(capacity: capacity)
        entries.initialize(
            repeating: AddressEntry(address: IPAddress(v4: 0), used: false, hasPortVIPs: false, anyPortTCP: -1, anyPortUDP: -1))
        mask = capacity - 1
        for (i, s) in services.enumerated() {
            var slot = Int(truncatingIfNeeded: addressHash(s.address)) & mask
            while entries[slot].used && entries[slot].address != s.address { slot = (slot + 1) & mask }
            entries[slot].used = true
            entries[slot].address = s.address
            if s.port != 0 {
                entries[slot].hasPortVIPs = true
            } else if s.ipProtocol == IPProtocol.tcp {
                entries[slot].anyPortTCP = Int32(i)
            } else if s.ipProtocol == IPProtocol.udp {
                entries[slot].anyPortUDP = Int32(i)
            }
        }
    }

    func deallocate() { entries.deallocate() }

    /// The entry index of a VIP address, or -1 when no VIP uses it.
    @inlinable @inline(__always)
    public func find(_ address: IPAddress) -> Int {
        var slot = Int(truncatingIfNeeded: addressHash(address)) & mask
        while true {
            let e = entries[slot]
            if !e.used { return -1 }
            if e.address == address { return slot }
            slot = (slot &+ 1) & mask
        }
    }
}

public struct ServiceEntry: Sendable {
    public var address: IPAddress
    public var port: UInt16
    public var ipProtocol: UInt8
    /// VIP index, or -1 for an empty slot.
    public var vip: Int32
}

/// VIPs with a specific port, by (address, port, protocol).
public struct ServiceMap {
    public let entries: UnsafeMutableBufferPointer<ServiceEntry>
    public let mask: Int

    @inlinable @inline(__always)
    public static func hash(_ a: IPAddress, _ port: UInt16, _ ipProtocol: UInt8) -> UInt64 {
        addressHash(a) ^ FlowHash.mix(UInt64(port) << 8 | UInt64(ipProtocol))
    }

    init(_ services: [ServiceSpec]) {
        let capacity = mapCapacity(services.count)
        entries = .allocate(capacity: capacity)
        entries.initialize(repeating: ServiceEntry(address: IPAddress(v4: 0), port: 0, ipProtocol: 0, vip: -1))
        mask = capacity - 1
        for (i, s) in services.enumerated() where s.port != 0 {
            var slot = Int(truncatingIfNeeded: Self.hash(s.address, s.port, s.ipProtocol)) & mask
            while entries[slot].vip >= 0 { slot = (slot + 1) & mask }
            entries[slot] = ServiceEntry(address: s.address, port: s.port, ipProtocol: s.ipProtocol, vip: Int32(i))
        }
    }

    func deallocate() { entries.deallocate() }

    @inlinable @inline(__always)
    public func find(address: IPAddress, port: UInt16, ipProtocol: UInt8) -> Int {
        var slot = Int(truncatingIfNeeded: Self.hash(address, port, ipProtocol)) & mask
        while true {
            let e = entries[slot]
            if e.vip < 0 { return -1 }
            if e.port == port && e.ipProtocol == ipProtocol && e.address == address { return Int(e.vip) }
            slot = (slot &+ 1) & mask
        }
    }
}
