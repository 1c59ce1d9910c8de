// The 5-tuple of a flow and the fixed hash every Tern node computes from it.

/// Source and destination address and port and the IP protocol of a packet.
public struct FiveTuple: Hashable, Sendable {
    public var source: IPAddress
    public var destination: IPAddress
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var ipProtocol: UInt8

    @inlinable
    public init(source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16, ipProtocol: UInt8) {
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.ipProtocol = ipProtocol
    }

    /// Ports, protocol and address family packed in one word (for hashing and flow-table keys).
    @inlinable @inline(__always)
    public var portsAndProtocol: UInt64 {
        UInt64(sourcePort) << 48 | UInt64(destinationPort) << 32 | UInt64(ipProtocol) << 8
            | (source.isV6 ? 6 : 4)
    }
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

    @inlinable @inline(__always)
    public static func hash(_ t: FiveTuple) -> UInt64 {
        var h: UInt64 = 0x243F_6A88_85A3_08D3
        h = step(h, t.source.high)
        h = step(h, t.source.low)
        h = step(h, t.destination.high)
        h = step(h, t.destination.low)
        h = step(h, t.portsAndProtocol)
        return mix(h)
    }
}
