// The 5-tuple of a flow and the fixed hash every Tern node computes from it.

import CFastPath

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
        self.init(
            source: source, destination: destination, ports: UInt32(sourcePort) << 16 | UInt32(destinationPort),
            ipProtocol: ipProtocol)
    }

    /// `ports` as the transport header's first four bytes read big-endian (source port << 16 |
    /// destination port): one load and no shifts of separate ports.
    @inlinable @inline(__always)
    public init(source: IPAddress, destination: IPAddress, ports: UInt32, ipProtocol: UInt8) {
        sourceHigh = source.high
        sourceLow = source.low
        destinationHigh = destination.high
        destinationLow = destination.low
        portsAndProtocol = UInt64(ports) << 32 | UInt64(ipProtocol) << 8 | (source.isV6 ? 6 : 4)
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
/// Definition (version 2, since 2026-11-30): take the five 64-bit words (source high, source low,
/// destination high, destination low, `portsAndProtocol`); with c = 0xFFFFFFFF, for each word w:
/// c = CRC32C(c, w) (the SSE4.2 `crc32` instruction: reflected polynomial 0x82F63B78 over w's 8
/// bytes, least significant first, no inversion); the hash is c * 0x9E3779B97F4A7C15 mod 2^64
/// (its low 32 bits pick Maglev's slot; the flow table takes bucket and tag from the rest).
/// Version 1 (`hashV1`, every release before) took five multiply-xor rounds and a finalizer:
/// about 30 instructions more per packet. Nodes must run the same version.
public enum FlowHash {
    /// The version every node of a fleet must share (docs/design.md, "Choosing a backend").
    public static let version = 2

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
        var c: UInt32 = 0xFFFF_FFFF
        c = tern_crc32c_u64(c, t.sourceHigh)
        c = tern_crc32c_u64(c, t.sourceLow)
        c = tern_crc32c_u64(c, t.destinationHigh)
        c = tern_crc32c_u64(c, t.destinationLow)
        c = tern_crc32c_u64(c, t.portsAndProtocol)
        return UInt64(c) &* 0x9E37_79B9_7F4A_7C15
    }

    /// Version 1 of the flow hash (before 2026-11-30): h = 0x243F6A8885A308D3; for each word w:
    /// h = (h XOR w) * 0x9E3779B97F4A7C15, h = h XOR (h >> 29); then `mix(h)` (the MurmurHash3
    /// 64-bit finalizer). Kept so its values stay pinned in the tests and documented.
    public static func hashV1(_ t: FiveTuple) -> UInt64 {
        let words = [t.sourceHigh, t.sourceLow, t.destinationHigh, t.destinationLow, t.portsAndProtocol]
        return mix(words.reduce(0x243F_6A88_85A3_08D3, step))
    }
}
