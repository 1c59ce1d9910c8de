// Writers for the headers Tern puts in front of a packet: Ethernet, outer IPv4 (RFC 2003),
// outer IPv6 (RFC 2473), UDP and GUE variant 0 (draft-ietf-intarea-gue). Callers make sure the
// bytes written to lie inside the buffer (headroom is checked in the pipeline).

public enum HeaderSize {
    public static let ethernet = 14
    /// An 802.1Q tag between the MAC addresses and the EtherType.
    public static let vlanTag = 4
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

    /// The Ethernet header ending at `l3`, with an 802.1Q tag (priority 0) when `vlan` is not 0.
    /// Returns where the frame starts: `l3` less 14, or 18 with the tag.
    @inlinable @inline(__always)
    public static func writeLinkHeader(
        _ p: UnsafeMutableRawPointer, before l3: Int, destination: MACAddress, source: MACAddress, etherType: UInt16, vlan: UInt16
    ) -> Int {
        if vlan == 0 {
            writeEthernet(p, at: l3 &- HeaderSize.ethernet, destination: destination, source: source, etherType: etherType)
            return l3 &- HeaderSize.ethernet
        }
        let start = l3 &- HeaderSize.ethernet &- HeaderSize.vlanTag
        writeEthernet(p, at: start, destination: destination, source: source, etherType: EtherType.vlan)
        p.storeBE16(vlan, at: l3 &- 4)
        p.storeBE16(etherType, at: l3 &- 2)
        return start
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
    public static func writeUDP(_ p: UnsafeMutableRawPointer, at o: Int, sourcePort: UInt16, destinationPort: UInt16, length: Int)
    {
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
}

/// The outer headers toward one backend, prepared once per snapshot so a packet only copies them
/// and fills in what changes per packet (lengths, TOS or traffic class, identification and DF,
/// flow label, UDP source port, checksums). A template is a 64-byte block: the header bytes from
/// offset 0 (IPv4 20, IPv4+UDP+GUE 32, IPv6 40, IPv6+UDP+GUE 52), its `Kind` at byte 56, the
/// kind's header length at 57 and outer EtherType (as on the wire) at 58, read directly so a
/// packet does not branch on the kind for them, and at byte 60 the folded ones'-complement sum of
/// the constant words: of the IPv4 header, or of the IPv6 pseudo-header's addresses and next
/// header plus the GUE header, for the UDP checksum of GUE over IPv6.
public enum EncapTemplate {
    public static let size = 64
    @usableFromInline static let kindOffset = 56
    @usableFromInline static let headerLengthOffset = 57
    @usableFromInline static let etherTypeOffset = 58
    @usableFromInline static let seedOffset = 60

    public enum Kind: UInt8, Sendable {
        case ipv4, ipv4GUE, ipv6, ipv6GUE

        /// Bytes the template puts in front of the inner packet (Ethernet not included).
        @inlinable @inline(__always) public var headerLength: Int {
            switch self {
            case .ipv4: HeaderSize.ipv4
            case .ipv4GUE: HeaderSize.ipv4 + HeaderSize.udp + HeaderSize.gue
            case .ipv6: HeaderSize.ipv6
            case .ipv6GUE: HeaderSize.ipv6 + HeaderSize.udp + HeaderSize.gue
            }
        }

        @inlinable @inline(__always) public var outerIsV6: Bool { rawValue >= Kind.ipv6.rawValue }
    }

    /// Writes the template for packets to `destination` into the 64 bytes at `t`. `source` must be
    /// of the same family as `destination`; `guePort` nil means IP in IP.
    public static func prepare(
        at t: UnsafeMutableRawPointer, source: IPAddress, destination: IPAddress, innerIsV6: Bool, guePort: UInt16?
    ) {
        t.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let innerProtocol = innerIsV6 ? IPProtocol.ipv6 : IPProtocol.ipip
        let outerProtocol = guePort == nil ? innerProtocol : IPProtocol.udp
        let kind: Kind
        var seed: UInt64
        if destination.isV6 {
            kind = guePort == nil ? .ipv6 : .ipv6GUE
            HeaderBuilder.writeIPv6(
                t, at: 0, trafficClass: 0, flowLabel: 0, payloadLength: 0, nextHeader: outerProtocol, source: source,
                destination: destination)
            seed = Checksum.sum(of: source) &+ Checksum.sum(of: destination) &+ UInt64(IPProtocol.udp)
        } else {
            kind = guePort == nil ? .ipv4 : .ipv4GUE
            HeaderBuilder.writeIPv4(
                t, at: 0, tos: 0, totalLength: 0, identification: 0, dontFragment: false, ipProtocol: outerProtocol,
                source: source, destination: destination)
            t.storeBE16(0, at: 10)
            seed = Checksum.add(UnsafeRawPointer(t), length: HeaderSize.ipv4)
        }
        if let guePort {
            let udp = destination.isV6 ? HeaderSize.ipv6 : HeaderSize.ipv4
            HeaderBuilder.writeUDP(t, at: udp, sourcePort: 0, destinationPort: guePort, length: 0)
            HeaderBuilder.writeGUE(t, at: udp + HeaderSize.udp, innerProtocol: innerProtocol)
            // The GUE header is constant, so it belongs in the UDP checksum's seed too.
            if destination.isV6 { seed &+= Checksum.add(UnsafeRawPointer(t) + udp + HeaderSize.udp, length: HeaderSize.gue) }
        }
        t.storeBytes(of: kind.rawValue, toByteOffset: kindOffset, as: UInt8.self)
        t.storeBytes(of: UInt8(kind.headerLength), toByteOffset: headerLengthOffset, as: UInt8.self)
        t.storeBE16(kind.outerIsV6 ? EtherType.ipv6 : EtherType.ipv4, at: etherTypeOffset)
        t.storeBytes(of: UInt32(Checksum.fold(seed)), toByteOffset: seedOffset, as: UInt32.self)
    }

    @inlinable @inline(__always)
    public static func kind(_ t: UnsafeRawPointer) -> Kind {
        Kind(rawValue: t.load(fromByteOffset: kindOffset, as: UInt8.self)).unsafelyUnwrapped
    }

    /// `kind(t).headerLength`, read from the template.
    @inlinable @inline(__always)
    public static func headerLength(_ t: UnsafeRawPointer) -> Int {
        Int(t.load(fromByteOffset: headerLengthOffset, as: UInt8.self))
    }

    /// Copies the template's outer EtherType to `p + o` (the Ethernet header's last two bytes).
    @inlinable @inline(__always)
    public static func storeEtherType(_ t: UnsafeRawPointer, to p: UnsafeMutableRawPointer, at o: Int) {
        p.storeBytes(of: t.load(fromByteOffset: etherTypeOffset, as: UInt16.self), toByteOffset: o, as: UInt16.self)
    }

    /// Puts the template's headers at `o`, in front of the `innerLength`-byte inner packet that
    /// follows, and fills in the per-packet fields. `hash` is the flow hash (UDP source port and
    /// IPv6 flow label come from it, so a flow keeps one outer 5-tuple). An IPv4 outer header gets
    /// `identification` and DF as given; IPv6 needs neither.
    @inlinable @inline(__always)
    public static func apply(
        _ t: UnsafeRawPointer, to p: UnsafeMutableRawPointer, at o: Int, innerLength: Int, trafficClass: UInt8,
        identification: UInt16, dontFragment: Bool, hash: UInt64
    ) {
        let headerLength = EncapTemplate.headerLength(t)
        let outerLength = innerLength &+ headerLength
        // The common case, plain IPv4, is told by the header length (which the caller has read
        // already), not by the kind: tests on the kind alone compile to a jump table.
        if headerLength == HeaderSize.ipv4 {
            (p + o).copyMemory(from: t, byteCount: HeaderSize.ipv4)
            writeIPv4Variable(
                t, p, at: o, outerLength: outerLength, trafficClass: trafficClass, identification: identification,
                dontFragment: dontFragment)
            return
        }
        let kind = EncapTemplate.kind(t)
        let sourcePort = 0xC000 | UInt16(truncatingIfNeeded: hash >> 50)
        if kind == .ipv4GUE {
            (p + o).copyMemory(from: t, byteCount: HeaderSize.ipv4 + HeaderSize.udp + HeaderSize.gue)
            p.storeBE16(sourcePort, at: o &+ HeaderSize.ipv4)
            p.storeBE16(UInt16(truncatingIfNeeded: outerLength &- HeaderSize.ipv4), at: o &+ HeaderSize.ipv4 &+ 4)
            writeIPv4Variable(
                t, p, at: o, outerLength: outerLength, trafficClass: trafficClass, identification: identification,
                dontFragment: dontFragment)
        } else if kind == .ipv6 {
            (p + o).copyMemory(from: t, byteCount: HeaderSize.ipv6)
            writeIPv6Variable(p, at: o, trafficClass: trafficClass, hash: hash, payloadLength: innerLength)
        } else {
            (p + o).copyMemory(from: t, byteCount: HeaderSize.ipv6 + HeaderSize.udp + HeaderSize.gue)
            let udpLength = outerLength &- HeaderSize.ipv6
            writeIPv6Variable(p, at: o, trafficClass: trafficClass, hash: hash, payloadLength: udpLength)
            let u = o &+ HeaderSize.ipv6
            p.storeBE16(sourcePort, at: u)
            p.storeBE16(UInt16(truncatingIfNeeded: udpLength), at: u &+ 4)
            // IPv6 requires a UDP checksum (RFC 8200); Linux drops zero-checksum GUE over IPv6. The
            // seed holds the addresses, next header and GUE header; add the rest.
            let seed = UInt64(t.load(fromByteOffset: seedOffset, as: UInt32.self))
            var sum = seed &+ UInt64(udpLength) &* 2 &+ UInt64(sourcePort) &+ UInt64(UnsafeRawPointer(p).be16(u &+ 2))
            sum = Checksum.add(UnsafeRawPointer(p) + (u &+ HeaderSize.udp &+ HeaderSize.gue), length: innerLength, to: sum)
            let c = ~Checksum.fold(sum)
            p.storeBE16(c == 0 ? 0xFFFF : c, at: u &+ 6)
        }
    }

    /// An outer IPv4 header's per-packet fields (TOS, total length, identification, DF) and its
    /// checksum, from the template's folded sum of the constant words.
    @inlinable @inline(__always)
    static func writeIPv4Variable(
        _ t: UnsafeRawPointer, _ p: UnsafeMutableRawPointer, at o: Int, outerLength: Int, trafficClass: UInt8,
        identification: UInt16, dontFragment: Bool
    ) {
        let flags: UInt16 = dontFragment ? 0x4000 : 0
        p.storeU8(trafficClass, at: o &+ 1)
        p.storeBE16(UInt16(truncatingIfNeeded: outerLength), at: o &+ 2)
        p.storeBE16(identification, at: o &+ 4)
        p.storeBE16(flags, at: o &+ 6)
        // Five 16-bit words (the seed is folded): the sum fits in 32 bits.
        let sum =
            t.load(fromByteOffset: seedOffset, as: UInt32.self) &+ UInt32(trafficClass) &+ UInt32(outerLength & 0xFFFF)
            &+ UInt32(identification) &+ UInt32(flags)
        p.storeBE16(~Checksum.fold(small: sum), at: o &+ 10)
    }

    @inlinable @inline(__always)
    static func writeIPv6Variable(_ p: UnsafeMutableRawPointer, at o: Int, trafficClass: UInt8, hash: UInt64, payloadLength: Int)
    {
        let flowLabel = UInt32(truncatingIfNeeded: hash >> 12) & 0xF_FFFF
        p.storeBE32(6 << 28 | UInt32(trafficClass) << 20 | flowLabel, at: o)
        p.storeBE16(UInt16(truncatingIfNeeded: payloadLength), at: o &+ 4)
    }
}
