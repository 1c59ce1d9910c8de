// MSS clamping: a SYN's maximum segment size option lowered to what a tunnel carries, so that a
// client behind a firewall that drops ICMP never sends a segment too big for it (what routers do
// for PPPoE and what load balancers without path MTU discovery did). The TCP checksum is kept
// right by RFC 1624 updates of the changed 16-bit words.

public enum TCPOptions {
    /// Lowers the MSS option of the TCP header at `tcp` (`available` bytes of it readable) to
    /// `limit`; returns whether it did. A header without the option, with an MSS already at or
    /// under `limit`, or with malformed options is left alone.
    @inlinable
    public static func clampMSS(_ tcp: UnsafeMutableRawPointer, available: Int, to limit: UInt16) -> Bool {
        guard available >= 20 else { return false }
        let r = UnsafeRawPointer(tcp)
        let headerLength = Int(r.u8(12) >> 4) &* 4
        guard headerLength > 20, headerLength <= available else { return false }
        var i = 20
        while i < headerLength {
            let kind = r.u8(i)
            if kind == 0 { return false }  // end of option list
            if kind == 1 {  // no-operation
                i += 1
                continue
            }
            guard i + 1 < headerLength else { return false }
            let length = Int(r.u8(i + 1))
            guard length >= 2, i + length <= headerLength else { return false }
            if kind == 2 && length == 4 {
                let at = i + 2
                guard r.be16(at) > limit else { return false }
                // The value may start at an odd offset: update each 16-bit word it touches.
                // (odd: the words at at-1 and at+1, both inside the option).
                let first = at & ~1
                let odd = at & 1 != 0
                let old0 = r.be16(first)
                let old1 = odd ? r.be16(first + 2) : 0
                tcp.storeU8(UInt8(truncatingIfNeeded: limit >> 8), at: at)
                tcp.storeU8(UInt8(truncatingIfNeeded: limit), at: at + 1)
                var checksum = Checksum.update(r.be16(16), old: old0, new: r.be16(first))
                if odd { checksum = Checksum.update(checksum, old: old1, new: r.be16(first + 2)) }
                tcp.storeBE16(checksum, at: 16)
                return true
            }
            i += length
        }
        return false
    }

    /// The largest MSS a tunnel of `tunnelMTU` bytes carries for an inner IPv4 or IPv6 packet
    /// (inner IP header and a 20-byte TCP header subtracted).
    @inlinable
    public static func mss(tunnelMTU: Int, innerIsV6: Bool) -> UInt16 {
        UInt16(clamping: tunnelMTU - (innerIsV6 ? 40 : 20) - 20)
    }
}
