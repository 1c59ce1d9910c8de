// The 5-tuple of a flow and the fixed hash every Tern node computes from it.

/// Source and destination address and port and the IP protocol of a packet, held as the five
/// 64-bit words the flow hash and the flow table use (no padding, no per-address family flag).
public struct FiveTuple: Hashable, Sendable {
    public var sourceHigh: UInt64
    public var sourceLow: UInt64
    public var destinationHigh: UInt64
    public var destinationLow: UInt64
    /// Source port << 48 | destination port << 32 | protocol << 8 | 4 or 6 (the address family).
    public var portsAndProtocol: UInt64

    @inlinable @inline(__always)
    public init(source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16, ipProtocol: UInt8) {
        sourceHigh = source.high
        sourceLow = source.low
        destinationHigh = destination.high
        destinationLow = destination.low
        portsAndProtocol = UInt64(sourcePort) << 48 | UInt64(destinationPort) << 32 | UInt64(ipProtocol) << 8
            | (source.isV6 ? 6 : 4)
    }

    @inlinable public var isV6: Bool { portsAndProtocol & 0xFF == 6 }
    @inlinable public var source: IPAddress { IPAddress(high: sourceHigh, low: sourceLow, isV6: isV6) }
    @inlinable public var destination: IPAddress { IPAddress(high: destinationHigh, low: destinationLow, isV6: isV6) }
    @inlinable public var sourcePort: UInt16 { UInt16(truncatingIfNeeded: portsAndProtocol >> 48) }
    @inlinable public var destinationPort: UInt16 { UInt16(truncatingIfNeeded: portsAndProtocol >> 32) }
    @inlinable public var ipProtocol: UInt8 { UInt8(truncatingIfNeeded: portsAndProtocol >> 8) }
}

/// The flow hash. It must be the same on every node and in every run, because every node behind an
/// ECMP router must send a flow to the same backend; so it is a fixed function, never `Hasher`.
///
/// Definition: take the five 64-bit words (source high, source low, destination high, destination
/// low, `portsAndProtocol`); with h = 0x243F6A8885A308D3, for each word w: h = (h XOR w) * 0x9E3779B97F4A7C15,
/// h = h XOR (h >> 29); the result is `FlowHash.mix(h)` (the MurmurHash3 64-bit finalizer).
public enum FlowHash {
    @inlinable @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var k = x
        k ^= k >> 33
        k &*= 0xFF51_AFD7_ED55_8CCD
        k ^= k >> 33
        k &*= 0xC4CE_B9FE_1A85_EC53
        k ^= k >> 33
        return k
    }

    @inlinable @inline(__always)
    static func step(_ h: UInt64, _ w: UInt64) -> UInt64 {
        let m = (h ^ w) &* 0x9E37_79B9_7F4A_7C15
        return m ^ (m >> 29)
    }

    /// What a VIP's Maglev pick hashes (`vip.hash`): the flow hash over the 5-tuple with some
    /// words set to zero. The flow table always keys on the whole 5-tuple.
    public enum Mode: UInt8, Sendable {
        /// Every word: each connection is placed on its own.
        case fiveTuple = 0
        /// The source address alone (destination words and `portsAndProtocol` but its address
        /// family byte zero): every connection of a client goes to one backend, on every node.
        case source = 1
        /// All but the source port (its 16 bits zero): a client whose source port changes (NAT
        /// rebinding, QUIC migration) stays on its backend.
        case sourcePortLess = 2
    }

    /// The hash a VIP's `mode` gives a flow (`hash(t)` for `.fiveTuple`).
    @inlinable
    public static func hash(_ t: FiveTuple, mode: Mode) -> UInt64 {
        var masked = t
        switch mode {
        case .fiveTuple: break
        case .source:
            masked.destinationHigh = 0
            masked.destinationLow = 0
            masked.portsAndProtocol &= 0xFF
        case .sourcePortLess:
            masked.portsAndProtocol &= 0x0000_FFFF_FFFF_FFFF
        }
        return hash(masked)
    }

    @inlinable @inline(__always)
    public static func hash(_ t: FiveTuple) -> UInt64 {
        var h: UInt64 = 0x243F_6A88_85A3_08D3
        h = step(h, t.sourceHigh)
        h = step(h, t.sourceLow)
        h = step(h, t.destinationHigh)
        h = step(h, t.destinationLow)
        h = step(h, t.portsAndProtocol)
        return mix(h)
    }
}
