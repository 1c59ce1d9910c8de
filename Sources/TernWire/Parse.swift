// Parsing Ethernet, IPv4/IPv6 and TCP/UDP/ICMP headers from raw frame bytes.
//
// Every field is read only after the bytes holding it are known to lie inside the frame, and every
// length a header claims is checked against what is really there ("lying headers" are malformed).
// Parsing is split at the network layer so the pipeline can hand traffic that is not for a VIP to
// the host before looking at (and possibly rejecting) its transport header.

public enum EtherType {
    public static let ipv4: UInt16 = 0x0800
    public static let ipv6: UInt16 = 0x86DD
    public static let vlan: UInt16 = 0x8100
}

/// TCP header flags (RFC 9293).
public enum TCPFlag {
    public static let fin: UInt8 = 0x01
    public static let syn: UInt8 = 0x02
    public static let rst: UInt8 = 0x04
    public static let ack: UInt8 = 0x10
}

public enum IPProtocol {
    public static let hopByHop: UInt8 = 0
    public static let icmp: UInt8 = 1
    public static let ipip: UInt8 = 4
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let ipv6: UInt8 = 41
    public static let routing: UInt8 = 43
    public static let fragment: UInt8 = 44
    public static let icmpv6: UInt8 = 58
    public static let destinationOptions: UInt8 = 60
}

public enum ParseStatus: Equatable, Sendable {
    case ok
    /// Not an IP frame (ARP, LLDP, stacked VLANs, ...): not Tern's business.
    case notIP
    /// Truncated or inconsistent headers.
    case malformed
}

/// What the network layer says about a frame. Offsets are from the start of the frame.
public struct NetworkHeader: Sendable {
    public var l3Offset = 0
    /// End of the IP packet as its header gives it; bytes after it are link-layer padding.
    public var ipEnd = 0
    public var isV6 = false
    /// IPv4 TOS or IPv6 traffic class (DSCP and ECN).
    public var trafficClass: UInt8 = 0
    /// IPv4 DF bit (always false for IPv6).
    public var dontFragment = false
    /// IPv4 MF or a non-zero offset; IPv6 fragment header present.
    public var isFragment = false
    /// The upper-layer protocol after any IPv6 extension headers.
    public var ipProtocol: UInt8 = 0
    public var l4Offset = 0
    public var source = IPAddress(v4: 0)
    public var destination = IPAddress(v4: 0)

    @inlinable public init() {}

    /// Bytes of the IP packet (header included), without link-layer padding.
    @inlinable public var ipLength: Int { ipEnd - l3Offset }
}

/// The addresses, protocol and ports of the packet an ICMP error quotes, as its sender wrote them.
public struct QuotedFlow: Sendable {
    public var source = IPAddress(v4: 0)
    public var destination = IPAddress(v4: 0)
    public var ipProtocol: UInt8 = 0
    public var sourcePort: UInt16 = 0
    public var destinationPort: UInt16 = 0

    @inlinable public init() {}
}

/// Ports (TCP/UDP) or type and code (ICMP, in `sourcePort` high/low bytes unused).
public struct TransportHeader: Sendable {
    public var sourcePort: UInt16 = 0
    public var destinationPort: UInt16 = 0
    public var icmpType: UInt8 = 0
    public var icmpCode: UInt8 = 0
    /// TCP's flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10); 0 for other protocols.
    public var tcpFlags: UInt8 = 0

    @inlinable public init() {}
}

public enum Parser {
    /// Most IPv6 extension headers walked before the packet is called malformed.
    public static let maxExtensionHeaders = 8

    /// Parses Ethernet (one optional 802.1Q tag) and the IPv4 or IPv6 header, walking IPv6
    /// hop-by-hop, routing and destination-options headers and noting a fragment header.
    @inlinable @inline(__always)
    public static func parseNetwork(_ p: UnsafeRawPointer, length: Int, into h: inout NetworkHeader) -> ParseStatus {
        guard length >= 14 else { return .malformed }
        var etherType = p.be16(12)
        var l3 = 14
        if etherType == EtherType.vlan {
            guard length >= 18 else { return .malformed }
            etherType = p.be16(16)
            l3 = 18
        }
        h.l3Offset = l3
        if etherType == EtherType.ipv4 {
            return parseIPv4(p, length: length, l3: l3, into: &h)
        }
        if etherType == EtherType.ipv6 {
            return parseIPv6(p, length: length, l3: l3, into: &h)
        }
        return .notIP
    }

    @inlinable @inline(__always)
    static func parseIPv4(_ p: UnsafeRawPointer, length: Int, l3: Int, into h: inout NetworkHeader) -> ParseStatus {
        guard length - l3 >= 20 else { return .malformed }
        let versionIHL = p.u8(l3)
        let headerLength = Int(versionIHL & 0x0F) &* 4
        let totalLength = Int(p.be16(l3 + 2))
        guard versionIHL >> 4 == 4, headerLength >= 20, totalLength >= headerLength, totalLength <= length - l3
        else { return .malformed }
        let flagsFragment = p.be16(l3 + 6)
        h.isV6 = false
        h.ipEnd = l3 + totalLength
        h.trafficClass = p.u8(l3 + 1)
        h.dontFragment = flagsFragment & 0x4000 != 0
        h.isFragment = flagsFragment & 0x3FFF != 0
        h.ipProtocol = p.u8(l3 + 9)
        h.l4Offset = l3 + headerLength
        h.source = IPAddress(loadingFrom: p, offset: l3 + 12, isV6: false)
        h.destination = IPAddress(loadingFrom: p, offset: l3 + 16, isV6: false)
        return .ok
    }

    @inlinable @inline(__always)
    static func parseIPv6(_ p: UnsafeRawPointer, length: Int, l3: Int, into h: inout NetworkHeader) -> ParseStatus {
        guard length - l3 >= 40 else { return .malformed }
        let word0 = p.be32(l3)
        let payloadLength = Int(p.be16(l3 + 4))
        // A zero payload length means a jumbogram, which no Ethernet link here can carry.
        guard word0 >> 28 == 6, payloadLength > 0, payloadLength <= length - l3 - 40 else { return .malformed }
        h.isV6 = true
        h.ipEnd = l3 + 40 + payloadLength
        h.trafficClass = UInt8(truncatingIfNeeded: word0 >> 20)
        h.dontFragment = false
        h.isFragment = false
        h.source = IPAddress(loadingFrom: p, offset: l3 + 8, isV6: true)
        h.destination = IPAddress(loadingFrom: p, offset: l3 + 24, isV6: true)
        var next = p.u8(l3 + 6)
        var offset = l3 + 40
        var walked = 0
        while next == IPProtocol.hopByHop || next == IPProtocol.routing
            || next == IPProtocol.destinationOptions || next == IPProtocol.fragment
        {
            walked += 1
            guard walked <= maxExtensionHeaders, h.ipEnd - offset >= 8 else { return .malformed }
            if next == IPProtocol.fragment {
                h.isFragment = true
                next = p.u8(offset)
                offset += 8
            } else {
                let extensionLength = (Int(p.u8(offset + 1)) + 1) &* 8
                guard h.ipEnd - offset >= extensionLength else { return .malformed }
                next = p.u8(offset)
                offset += extensionLength
            }
        }
        h.ipProtocol = next
        h.l4Offset = offset
        return .ok
    }

    /// A fragment's identification, offset (bytes) and more-fragments flag: IPv4's header fields,
    /// or IPv6's fragment header (found by walking the extension headers again). Slow path.
    @inlinable
    public static func fragmentFields(_ p: UnsafeRawPointer, _ h: borrowing NetworkHeader) -> (
        id: UInt32, offset: Int, more: Bool
    )? {
        if !h.isV6 {
            let flags = p.be16(h.l3Offset + 6)
            return (UInt32(p.be16(h.l3Offset + 4)), Int(flags & 0x1FFF) &* 8, flags & 0x2000 != 0)
        }
        var next = p.u8(h.l3Offset + 6)
        var offset = h.l3Offset + 40
        while offset < h.l4Offset {
            if next == IPProtocol.fragment {
                guard h.ipEnd - offset >= 8 else { return nil }
                let word = p.be16(offset + 2)
                return (p.be32(offset + 4), Int(word & 0xFFF8), word & 1 != 0)
            }
            next = p.u8(offset)
            offset += (Int(p.u8(offset + 1)) + 1) &* 8
        }
        return nil
    }

    /// The ports (and TCP flags) of a first fragment: as `parseTransport`, without asking that
    /// the whole UDP datagram be here (the rest is in later fragments).
    @inlinable
    public static func parseFirstFragmentPorts(_ p: UnsafeRawPointer, _ h: borrowing NetworkHeader, into t: inout TransportHeader)
        -> Bool
    {
        let available = h.ipEnd - h.l4Offset
        guard h.ipProtocol == IPProtocol.tcp ? available >= 20 : available >= 8 else { return false }
        t.sourcePort = p.be16(h.l4Offset)
        t.destinationPort = p.be16(h.l4Offset + 2)
        if h.ipProtocol == IPProtocol.tcp { t.tcpFlags = p.u8(h.l4Offset + 13) }
        return true
    }

    /// Parses the TCP, UDP, ICMP or ICMPv6 header at `h.l4Offset`. Other protocols return `.ok`
    /// with zero ports. Do not call it for fragments: only a first fragment holds the header.
    @inlinable @inline(__always)
    public static func parseTransport(_ p: UnsafeRawPointer, _ h: borrowing NetworkHeader, into t: inout TransportHeader)
        -> ParseStatus
    {
        let available = h.ipEnd - h.l4Offset
        switch h.ipProtocol {
        case IPProtocol.tcp:
            guard available >= 20 else { return .malformed }
            let dataOffset = Int(p.u8(h.l4Offset + 12) >> 4) &* 4
            guard dataOffset >= 20, dataOffset <= available else { return .malformed }
            t.sourcePort = p.be16(h.l4Offset)
            t.destinationPort = p.be16(h.l4Offset + 2)
            t.tcpFlags = p.u8(h.l4Offset + 13)
        case IPProtocol.udp:
            guard available >= 8 else { return .malformed }
            let udpLength = Int(p.be16(h.l4Offset + 4))
            guard udpLength >= 8, udpLength <= available else { return .malformed }
            t.sourcePort = p.be16(h.l4Offset)
            t.destinationPort = p.be16(h.l4Offset + 2)
        case IPProtocol.icmp, IPProtocol.icmpv6:
            guard available >= 8 else { return .malformed }
            t.icmpType = p.u8(h.l4Offset)
            t.icmpCode = p.u8(h.l4Offset + 1)
        default:
            break
        }
        return .ok
    }

    /// The flow an ICMP error is about: the IP header and ports it quotes, which start `offset`
    /// bytes into the frame and may be cut short anywhere after the ports (RFC 792 quotes only the
    /// IP header and 8 bytes). Nil unless the quote is of the given family and TCP or UDP (not a
    /// later fragment, which would hold no ports), or ICMP: an echo reply or a later fragment (no
    /// ports). Extension headers are walked as far as quoted.
    @inlinable
    public static func parseQuoted(_ p: UnsafeRawPointer, at offset: Int, end: Int, isV6: Bool) -> QuotedFlow? {
        var next: UInt8
        var l4: Int
        var flow = QuotedFlow()
        var laterFragment = false
        if isV6 {
            guard end - offset >= 40, p.u8(offset) >> 4 == 6 else { return nil }
            flow.source = IPAddress(loadingFrom: p, offset: offset + 8, isV6: true)
            flow.destination = IPAddress(loadingFrom: p, offset: offset + 24, isV6: true)
            next = p.u8(offset + 6)
            l4 = offset + 40
            var walked = 0
            while next == IPProtocol.hopByHop || next == IPProtocol.routing || next == IPProtocol.destinationOptions
                || next == IPProtocol.fragment
            {
                walked += 1
                guard walked <= maxExtensionHeaders, end - l4 >= 8 else { return nil }
                if next == IPProtocol.fragment {
                    laterFragment = p.be16(l4 + 2) & 0xFFF8 != 0
                    next = p.u8(l4)
                    l4 += 8
                } else {
                    next = p.u8(l4)
                    l4 += (Int(p.u8(l4 + 1)) + 1) &* 8
                }
            }
        } else {
            guard end - offset >= 20 else { return nil }
            let versionIHL = p.u8(offset)
            let headerLength = Int(versionIHL & 0x0F) &* 4
            guard versionIHL >> 4 == 4, headerLength >= 20 else { return nil }
            laterFragment = p.be16(offset + 6) & 0x1FFF != 0
            flow.source = IPAddress(loadingFrom: p, offset: offset + 12, isV6: false)
            flow.destination = IPAddress(loadingFrom: p, offset: offset + 16, isV6: false)
            next = p.u8(offset + 9)
            l4 = offset + headerLength
        }
        // An echo reply (a backend answering a fragmented echo request): the flow has no ports, so
        // a later fragment of it names its flow too (a VIP sends no other ICMP in fragments).
        if next == (isV6 ? IPProtocol.icmpv6 : IPProtocol.icmp) {
            guard laterFragment || (end - l4 >= 4 && p.u8(l4) == (isV6 ? 129 : 0)) else { return nil }
            flow.ipProtocol = next
            return flow
        }
        guard !laterFragment, next == IPProtocol.tcp || next == IPProtocol.udp, end - l4 >= 4 else { return nil }
        flow.ipProtocol = next
        flow.sourcePort = p.be16(l4)
        flow.destinationPort = p.be16(l4 + 2)
        return flow
    }
}
