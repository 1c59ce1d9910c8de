// Tern's second hop on the wire: GUE private data (draft-ietf-intarea-gue: the P flag, bit 0 of
// the flags, says private flags follow the header; the header's hlen counts them in 32-bit words).
//
//   GUE header   | 0 |0| hlen |  inner protocol  |  flags ... P=1 |
//   private data | 0x54 ('T') | version 1 | family 4 or 6 | hops 1 |
//                | the second hop's address (4 or 16 bytes)          |
//
// The backend that owned a flow before its VIP's backends changed. Tern's backend program
// (ebpf/tern_backend.c) sends a packet that carries one on to that address, with the private data
// removed, when no local socket has its connection: so the hop is used at most once.

public enum SecondHop {
    public static let magic: UInt8 = 0x54
    public static let version: UInt8 = 1

    /// Bytes the private data adds: 8 for an IPv4 hop, 20 for IPv6.
    @inlinable
    public static func length(_ hop: IPAddress) -> Int { hop.isV6 ? 20 : 8 }

    /// Puts `hop` into the GUE frame at `p + start` (Ethernet, outer IPv4 or IPv6, UDP, GUE without
    /// options, inner packet): the headers move `length(hop)` bytes toward the buffer's start, the
    /// private data goes between them and the inner packet, and lengths and checksums follow (the
    /// outer IPv4 header's; UDP's over IPv6, where it is required). Returns the frame's new start.
    /// The caller makes sure there is headroom.
    public static func insert(into p: UnsafeMutableRawPointer, frameStart start: Int, outerIsV6: Bool, hop: IPAddress) -> Int {
        let ipLength = outerIsV6 ? HeaderSize.ipv6 : HeaderSize.ipv4
        let head = HeaderSize.ethernet + ipLength + HeaderSize.udp + HeaderSize.gue
        let extra = length(hop)
        let newStart = start - extra
        (p + newStart).copyMemory(from: p + start, byteCount: head)
        let ip = newStart + HeaderSize.ethernet
        let udp = ip + ipLength
        let gue = udp + HeaderSize.udp
        var data = p + gue + HeaderSize.gue
        for (i, b) in [magic, version, hop.isV6 ? 6 : 4, 1].enumerated() { data.storeU8(b, at: i) }
        data += 4
        for (i, b) in hop.bytes.enumerated() { data.storeU8(b, at: i) }
        p.storeU8(UInt8(extra / 4), at: gue)  // version 0, data message, hlen
        p.storeU8(UnsafeRawPointer(p).load(fromByteOffset: gue + 3, as: UInt8.self) | 1, at: gue + 3)  // P
        let udpLength = Int(UnsafeRawPointer(p).be16(udp + 4)) + extra
        p.storeBE16(UInt16(udpLength), at: udp + 4)
        if outerIsV6 {
            p.storeBE16(UInt16(Int(UnsafeRawPointer(p).be16(ip + 4)) + extra), at: ip + 4)
            p.storeBE16(0, at: udp + 6)
            var sum = Checksum.add(UnsafeRawPointer(p) + ip + 8, length: 32) + UInt64(udpLength) + UInt64(IPProtocol.udp)
            sum = Checksum.add(UnsafeRawPointer(p) + udp, length: udpLength, to: sum)
            let c = ~Checksum.fold(sum)
            p.storeBE16(c == 0 ? 0xFFFF : c, at: udp + 6)
        } else {
            p.storeBE16(UInt16(Int(UnsafeRawPointer(p).be16(ip + 2)) + extra), at: ip + 2)
            p.storeBE16(0, at: ip + 10)
            p.storeBE16(Checksum.compute(UnsafeRawPointer(p) + ip, length: HeaderSize.ipv4), at: ip + 10)
        }
        return newStart
    }
}
