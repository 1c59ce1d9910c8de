// Writers for the headers Tern puts in front of a packet: Ethernet, outer IPv4 (RFC 2003),
// outer IPv6 (RFC 2473), UDP and GUE variant 0 (draft-ietf-intarea-gue). Callers make sure the
// bytes written to lie inside the buffer (headroom is checked in the pipeline).

public enum HeaderSize {
    public static let ethernet = 14
    public static let ipv4 = 20
    public static let ipv6 = 40
    public static let udp = 8
    public static let gue = 4
}

public enum HeaderBuilder {
    @inlinable @inline(__always)
    public static func writeEthernet(
        _ p: UnsafeMutableRawPointer, at o: Int, destination: MACAddress, source: MACAddress, etherType: UInt16
    ) {
        destination.store(to: p, offset: o)
        source.store(to: p, offset: o + 6)
        p.storeBE16(etherType, at: o + 12)
    }

    /// A 20-byte IPv4 header with a valid checksum. TTL 64.
    @inlinable @inline(__always)
    public static func writeIPv4(
        _ p: UnsafeMutableRawPointer, at o: Int, tos: UInt8, totalLength: Int, identification: UInt16,
        dontFragment: Bool, ipProtocol: UInt8, source: IPAddress, destination: IPAddress
    ) {
        p.storeBE16(0x4500 | UInt16(tos), at: o)
        p.storeBE16(UInt16(truncatingIfNeeded: totalLength), at: o + 2)
        p.storeBE16(identification, at: o + 4)
        p.storeBE16(dontFragment ? 0x4000 : 0, at: o + 6)
        p.storeBE16(64 << 8 | UInt16(ipProtocol), at: o + 8)
        p.storeBE32(source.v4Value, at: o + 12)
        p.storeBE32(destination.v4Value, at: o + 16)
        // The header's words are all known here: sum them directly instead of reading them back.
        var sum = UInt64(0x4500 | UInt16(tos)) &+ UInt64(totalLength & 0xFFFF) &+ UInt64(identification)
        sum &+= UInt64(dontFragment ? 0x4000 : 0) &+ UInt64(64 << 8 | UInt16(ipProtocol))
        sum &+= UInt64(source.v4Value) &+ UInt64(destination.v4Value)
        p.storeBE16(Checksum.finish(sum), at: o + 10)
    }

    /// A 40-byte IPv6 header. Hop limit 64.
    @inlinable @inline(__always)
    public static func writeIPv6(
        _ p: UnsafeMutableRawPointer, at o: Int, trafficClass: UInt8, flowLabel: UInt32, payloadLength: Int,
        nextHeader: UInt8, source: IPAddress, destination: IPAddress
    ) {
        p.storeBE32(6 << 28 | UInt32(trafficClass) << 20 | (flowLabel & 0xF_FFFF), at: o)
        p.storeBE16(UInt16(truncatingIfNeeded: payloadLength), at: o + 4)
        p.storeBE16(UInt16(nextHeader) << 8 | 64, at: o + 6)
        source.store(to: p, offset: o + 8)
        destination.store(to: p, offset: o + 24)
    }

    /// An 8-byte UDP header with a zero (absent) checksum.
    @inlinable @inline(__always)
    public static func writeUDP(_ p: UnsafeMutableRawPointer, at o: Int, sourcePort: UInt16, destinationPort: UInt16, length: Int) {
        p.storeBE16(sourcePort, at: o)
        p.storeBE16(destinationPort, at: o + 2)
        p.storeBE16(UInt16(truncatingIfNeeded: length), at: o + 4)
        p.storeBE16(0, at: o + 6)
    }

    /// A 4-byte GUE variant 0 header: version 0, no control flag, no options, `proto` = the inner
    /// protocol (4 for IPv4, 41 for IPv6), no flags.
    @inlinable @inline(__always)
    public static func writeGUE(_ p: UnsafeMutableRawPointer, at o: Int, innerProtocol: UInt8) {
        p.storeBE16(UInt16(innerProtocol), at: o)
        p.storeBE16(0, at: o + 2)
    }

    /// The UDP checksum over IPv6 (RFC 8200 8.1) of the `length` bytes at `o` (the UDP header with
    /// its checksum field zero, then the payload).
    @inlinable
    public static func udpChecksumV6(_ p: UnsafeRawPointer, at o: Int, length: Int, source: IPAddress, destination: IPAddress)
        -> UInt16
    {
        var sum = Checksum.sum(of: source) &+ Checksum.sum(of: destination)
        sum &+= UInt64(length) &+ UInt64(IPProtocol.udp)
        sum = Checksum.add(p + o, length: length, to: sum)
        let c = Checksum.finish(sum)
        return c == 0 ? 0xFFFF : c
    }
}
