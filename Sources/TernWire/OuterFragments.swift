// Outer IPv4 fragmentation (RFC 2003 5.1): an encapsulated packet too big for the tunnel whose
// inner IPv4 header allows fragmentation (no DF) is sent as outer fragments, which the backend
// reassembles before decapsulating. The frame is built whole first (outer header with DF clear);
// these functions cut it into MTU-sized frames: each fragment repeats the Ethernet header (and
// VLAN tag) and the outer IPv4 header with its own length, offset and MF flag.

public enum OuterFragments {
    /// Most fragments one packet may become (9,216-byte frames over a 1,280-byte MTU need 8).
    public static let maxCount = 8

    /// Bytes of outer payload per fragment: the MTU less the outer header, in 8-byte units.
    @inlinable
    public static func payloadPerFragment(mtu: Int) -> Int { (mtu &- HeaderSize.ipv4) & ~7 }

    /// Where the outer IPv4 header starts: after the Ethernet header and any 802.1Q tag.
    @inlinable
    public static func l3Offset(_ frame: UnsafeRawPointer) -> Int {
        frame.be16(12) == EtherType.vlan ? HeaderSize.ethernet &+ HeaderSize.vlanTag : HeaderSize.ethernet
    }

    /// How many fragments a frame of `length` bytes becomes at `mtu`.
    @inlinable
    public static func count(_ frame: UnsafeRawPointer, length: Int, mtu: Int) -> Int {
        count(payload: length &- l3Offset(frame) &- HeaderSize.ipv4, mtu: mtu)
    }

    /// How many fragments `payload` bytes after the outer IPv4 header become at `mtu`.
    @inlinable
    public static func count(payload: Int, mtu: Int) -> Int {
        let per = payloadPerFragment(mtu: mtu)
        return per > 0 ? (payload &+ per &- 1) / per : 0
    }

    /// Largest fragment frame: the MTU plus an Ethernet header and a VLAN tag.
    @inlinable
    public static func largestFrame(mtu: Int) -> Int { mtu &+ HeaderSize.ethernet &+ HeaderSize.vlanTag }

    /// Writes fragment `k` of `frame` (`length` bytes, outer IPv4 header without options) to `out`
    /// and returns its length. Fragment 0 may be written over the frame itself (`out == frame`);
    /// write the others first, since it shortens the frame's header.
    @inlinable
    public static func write(_ k: Int, of frame: UnsafeMutableRawPointer, length: Int, mtu: Int, to out: UnsafeMutableRawPointer)
        -> Int
    {
        let l3 = l3Offset(frame)
        let payloadStart = l3 &+ HeaderSize.ipv4
        let per = payloadPerFragment(mtu: mtu)
        let offset = k &* per
        let chunk = min(per, length &- payloadStart &- offset)
        let last = payloadStart &+ offset &+ chunk == length
        if out != frame {
            out.copyMemory(from: frame, byteCount: payloadStart)
            (out + payloadStart).copyMemory(from: frame + (payloadStart &+ offset), byteCount: chunk)
        }
        let ip = out + l3
        ip.storeBE16(UInt16(truncatingIfNeeded: HeaderSize.ipv4 &+ chunk), at: 2)
        ip.storeBE16(UInt16(truncatingIfNeeded: (last ? 0 : 0x2000) | (offset >> 3)), at: 6)
        ip.storeBE16(0, at: 10)
        ip.storeBE16(Checksum.compute(UnsafeRawPointer(ip), length: HeaderSize.ipv4), at: 10)
        return payloadStart &+ chunk
    }
}
