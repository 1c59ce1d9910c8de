// Frame builders for tests, the fuzzer and benchmarks: valid Ethernet/IPv4/IPv6/TCP/UDP/ICMP
// frames with correct checksums, so tests start from real packets and break them on purpose.

import TernWire

public enum Frames {
    public static let routerMAC = MACAddress(value: 0x02_00_00_00_00_fe)
    public static let ourMAC = MACAddress(value: 0x02_00_00_00_00_01)

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }

    static func checksum(_ bytes: [UInt8], initial: UInt64 = 0) -> UInt16 {
        bytes.withUnsafeBytes { Checksum.finish(Checksum.add($0.baseAddress!, length: $0.count, to: initial)) }
    }

    static func pseudoSum(_ src: IPAddress, _ dst: IPAddress, _ proto: UInt8, _ length: Int) -> UInt64 {
        Checksum.sum(of: src) + Checksum.sum(of: dst) + UInt64(proto) + UInt64(length)
    }

    public static func ethernet(_ payload: [UInt8], etherType: UInt16, vlan: UInt16? = nil) -> [UInt8] {
        var f = [UInt8](repeating: 0, count: 12)
        f.withUnsafeMutableBytes { p in
            ourMAC.store(to: p.baseAddress!, offset: 0)
            routerMAC.store(to: p.baseAddress!, offset: 6)
        }
        if let vlan { f += be16(EtherType.vlan) + be16(vlan) }
        return f + be16(etherType) + payload
    }

    public static func ipv4(
        source: IPAddress, destination: IPAddress, protocol proto: UInt8, payload: [UInt8], tos: UInt8 = 0,
        dontFragment: Bool = true, identification: UInt16 = 0x1234, fragmentOffset: UInt16 = 0, moreFragments: Bool = false,
        options: [UInt8] = [], ttl: UInt8 = 64
    ) -> [UInt8] {
        precondition(options.count % 4 == 0)
        let headerLength = 20 + options.count
        var flags: UInt16 = fragmentOffset & 0x1FFF
        if dontFragment { flags |= 0x4000 }
        if moreFragments { flags |= 0x2000 }
        var h: [UInt8] = [UInt8(0x40 | headerLength / 4), tos] + be16(UInt16(headerLength + payload.count))
        h += be16(identification) + be16(flags) + [ttl, proto, 0, 0]
        h += source.bytes + destination.bytes + options
        let c = checksum(h)
        h[10] = UInt8(c >> 8)
        h[11] = UInt8(c & 0xFF)
        return h + payload
    }

    /// `extensions`: (next-header value of the extension, its bytes without the first two).
    public static func ipv6(
        source: IPAddress, destination: IPAddress, nextHeader: UInt8, payload: [UInt8], trafficClass: UInt8 = 0,
        flowLabel: UInt32 = 0, extensions: [(type: UInt8, body: [UInt8])] = [], hopLimit: UInt8 = 64
    ) -> [UInt8] {
        var chain: [UInt8] = []
        var first = nextHeader
        for ext in extensions.reversed() {
            let total = 2 + ext.body.count
            precondition(total % 8 == 0)
            chain = [first, UInt8(total / 8 - 1)] + ext.body + chain
            first = ext.type
        }
        let body = chain + payload
        let word0 = UInt32(6) << 28 | UInt32(trafficClass) << 20 | flowLabel
        var h: [UInt8] = [UInt8(word0 >> 24), UInt8(word0 >> 16 & 0xFF), UInt8(word0 >> 8 & 0xFF), UInt8(word0 & 0xFF)]
        h += be16(UInt16(body.count)) + [first, hopLimit] + source.bytes + destination.bytes
        return h + body
    }

    public static func tcp(
        source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16, flags: UInt8 = 0x02,
        payload: [UInt8] = [], options: [UInt8] = []
    ) -> [UInt8] {
        let headerLength = 20 + options.count
        var h = be16(sourcePort) + be16(destinationPort) + [0, 0, 0, 1, 0, 0, 0, 0]
        h += [UInt8(headerLength / 4) << 4, flags] + be16(65535) + [0, 0, 0, 0] + options
        let segment = h + payload
        let c = checksum(segment, initial: pseudoSum(source, destination, IPProtocol.tcp, segment.count))
        var out = segment
        out[16] = UInt8(c >> 8)
        out[17] = UInt8(c & 0xFF)
        return out
    }

    public static func udp(
        source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16, payload: [UInt8] = []
    ) -> [UInt8] {
        let length = 8 + payload.count
        let datagram = be16(sourcePort) + be16(destinationPort) + be16(UInt16(length)) + [0, 0] + payload
        var c = checksum(datagram, initial: pseudoSum(source, destination, IPProtocol.udp, length))
        if c == 0 { c = 0xFFFF }
        var out = datagram
        out[6] = UInt8(c >> 8)
        out[7] = UInt8(c & 0xFF)
        return out
    }

    /// ICMP (IPv4) or ICMPv6 echo request (type 8 or 128, unless `type` is given).
    public static func icmpEcho(source: IPAddress, destination: IPAddress, type: UInt8? = nil, payload: [UInt8] = [1, 2, 3, 4])
        -> [UInt8]
    {
        let v6 = destination.isV6
        var m: [UInt8] = [type ?? (v6 ? 128 : 8), 0, 0, 0, 0x12, 0x34, 0, 1] + payload
        let initial = v6 ? pseudoSum(source, destination, IPProtocol.icmpv6, m.count) : 0
        let c = checksum(m, initial: initial)
        m[2] = UInt8(c >> 8)
        m[3] = UInt8(c & 0xFF)
        return m
    }

    /// A whole Ethernet frame carrying TCP (or UDP) over IPv4 or IPv6, by the addresses' family.
    /// TCP segments are ACKs (a packet of an established connection) unless `tcpFlags` says else.
    public static func flow(
        source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16, udp: Bool = false,
        payload: [UInt8] = [], tos: UInt8 = 0, vlan: UInt16? = nil, tcpFlags: UInt8 = TCPFlag.ack
    ) -> [UInt8] {
        let l4 =
            udp
            ? Frames.udp(
                source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort,
                payload: payload)
            : Frames.tcp(
                source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort,
                flags: tcpFlags,
                payload: payload)
        let proto = udp ? IPProtocol.udp : IPProtocol.tcp
        if destination.isV6 {
            return ethernet(
                ipv6(source: source, destination: destination, nextHeader: proto, payload: l4, trafficClass: tos),
                etherType: EtherType.ipv6, vlan: vlan)
        }
        return ethernet(
            ipv4(source: source, destination: destination, protocol: proto, payload: l4, tos: tos),
            etherType: EtherType.ipv4, vlan: vlan)
    }
}

/// Turns fuzzer bytes into a frame: the first byte picks a valid skeleton aimed at the fuzz
/// snapshot's VIPs (or none), the next two give an offset to overwrite from and a length to cut to,
/// and the rest are written over the skeleton.
public enum FuzzFrames {
    static let skeletons: [[UInt8]] = {
        func a(_ s: String) -> IPAddress { IPAddress(s)! }
        let c4 = a("198.51.100.7")
        let c6 = a("2001:db8:1::7")
        let v4 = a("192.0.2.10")
        let v6 = a("2001:db8::10")
        return [
            Frames.flow(source: c4, destination: v4, sourcePort: 40000, destinationPort: 80),
            Frames.flow(source: c4, destination: v4, sourcePort: 40000, destinationPort: 53, udp: true, payload: [1, 2, 3]),
            Frames.flow(source: c6, destination: v6, sourcePort: 40000, destinationPort: 443, payload: [9]),
            Frames.flow(source: c6, destination: v6, sourcePort: 40000, destinationPort: 53, udp: true),
            Frames.flow(source: c4, destination: v4, sourcePort: 1, destinationPort: 80, vlan: 7),
            Frames.ethernet(
                Frames.ipv4(
                    source: c4, destination: v4, protocol: IPProtocol.icmp, payload: Frames.icmpEcho(source: c4, destination: v4)),
                etherType: EtherType.ipv4),
            Frames.ethernet(
                Frames.ipv6(
                    source: c6, destination: v6, nextHeader: IPProtocol.icmpv6,
                    payload: Frames.icmpEcho(source: c6, destination: v6)),
                etherType: EtherType.ipv6),
            Frames.ethernet(
                Frames.ipv6(
                    source: c6, destination: v6, nextHeader: IPProtocol.udp,
                    payload: Frames.udp(source: c6, destination: v6, sourcePort: 5, destinationPort: 6),
                    extensions: [
                        (IPProtocol.hopByHop, [1, 4, 0, 0, 0, 0]), (IPProtocol.destinationOptions, [1, 4, 0, 0, 0, 0]),
                    ]),
                etherType: EtherType.ipv6),
            Frames.ethernet(
                Frames.ipv4(
                    source: c4, destination: v4, protocol: IPProtocol.tcp,
                    payload: Frames.tcp(source: c4, destination: v4, sourcePort: 2, destinationPort: 80), options: [1, 1, 1, 0]),
                etherType: EtherType.ipv4),
        ]
    }()

    public static func frame(from input: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        guard input.count >= 3 else { return Array(input) }
        let choice = Int(input[0]) % (skeletons.count + 1)
        if choice == skeletons.count { return Array(input[3...]) }
        var frame = skeletons[choice]
        let offset = Int(input[1]) % (frame.count + 1)
        for (k, byte) in input[3...].enumerated() where offset + k < frame.count { frame[offset + k] ^= byte }
        let cut = Int(input[2])
        if cut < 200 { frame.removeLast(min(frame.count, cut % 64)) }
        return frame
    }
}
