// IP and MAC addresses as plain values: parsed from and printed to text, loaded from and stored
// into packets. Parsing is written here (not inet_pton) so TernWire needs only the standard library.

/// An IPv4 or IPv6 address. The 16 bytes in network order are `high` (bytes 0-7) and `low`
/// (bytes 8-15) read as big-endian integers; an IPv4 address a.b.c.d is held in the low 32 bits.
public struct IPAddress: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64
    public var isV6: Bool

    @inlinable
    public init(high: UInt64, low: UInt64, isV6: Bool) {
        self.high = high
        self.low = low
        self.isV6 = isV6
    }

    @inlinable
    public init(v4 value: UInt32) {
        self.init(high: 0, low: UInt64(value), isV6: false)
    }

    /// Address bits: 32 or 128.
    public var bitWidth: Int { isV6 ? 128 : 32 }

    /// The address `n` after this one within the low 64 bits (the addresses of a VIP prefix,
    /// at most 256 of them from an aligned start, never carry into `high`).
    public func advanced(by n: UInt64) -> IPAddress {
        IPAddress(high: high, low: low &+ n, isV6: isV6)
    }

    /// Whether the bits after the first `prefixLength` are all zero (an aligned prefix start).
    public func hasZeroHostBits(prefixLength: Int) -> Bool {
        let hostBits = bitWidth - prefixLength
        guard hostBits > 0 else { return true }
        if hostBits >= 64 { return low == 0 && (hostBits == 64 || high & ((1 << (hostBits - 64)) - 1) == 0) }
        return low & ((1 << UInt64(hostBits)) - 1) == 0
    }

    /// Loads 4 (IPv4) or 16 (IPv6) bytes in network order from packet memory.
    @inlinable @inline(__always)
    public init(loadingFrom p: UnsafeRawPointer, offset: Int, isV6: Bool) {
        if isV6 {
            self.init(high: p.be64(offset), low: p.be64(offset + 8), isV6: true)
        } else {
            self.init(v4: p.be32(offset))
        }
    }

    /// Stores the address (4 or 16 bytes) in network order.
    @inlinable @inline(__always)
    public func store(to p: UnsafeMutableRawPointer, offset: Int) {
        if isV6 {
            p.storeBE64(high, at: offset)
            p.storeBE64(low, at: offset + 8)
        } else {
            p.storeBE32(v4Value, at: offset)
        }
    }

    @inlinable
    public var v4Value: UInt32 { UInt32(truncatingIfNeeded: low) }

    /// The address bytes in network order (4 or 16 of them).
    public var bytes: [UInt8] {
        if !isV6 { return (0..<4).map { UInt8(truncatingIfNeeded: v4Value >> (24 - 8 * $0)) } }
        return (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    /// Whether this source names one host that an ICMP message may be sent to (RFC 1122 3.2.2 and
    /// 3.2.1.3, RFC 4443 2.4): not unspecified, loopback, multicast (link-local multicast
    /// included), IPv4 broadcast, "this network" (0/8) or 240/4, and not an IPv4-mapped IPv6
    /// address. Link-local unicast sources are hosts and may be answered.
    @inlinable
    public var isSingleHost: Bool {
        if isV6 {
            if high == 0 && (low <= 1 || low >> 32 == 0xFFFF) { return false }  // ::, ::1, ::ffff:a.b.c.d
            return high >> 56 != 0xFF
        }
        let a = v4Value
        return a >> 24 != 0 && a >> 24 != 127 && a >> 28 < 0xE
    }

    /// Why a packet could not be tunnelled to or accepted for this address, or nil when it is an
    /// ordinary unicast address: unspecified, loopback, multicast, link-local, IPv4 broadcast or
    /// the reserved 240/4 block.
    public var notUnicastReason: String? {
        if isV6 {
            if high == 0 && low == 0 { return "the unspecified address" }
            if high == 0 && low == 1 { return "the loopback address" }
            if high >> 56 == 0xFF { return "a multicast address" }
            if high >> 54 == 0xFE80 >> 6 { return "a link-local address" }
            if high == 0 && low >> 32 == 0xFFFF { return "an IPv4-mapped address (write the IPv4 address)" }
            return nil
        }
        let a = v4Value
        if a == 0 { return "the unspecified address" }
        if a >> 24 == 127 { return "a loopback address" }
        if a == 0xFFFF_FFFF { return "the broadcast address" }
        if a >> 28 == 0xE { return "a multicast address" }
        if a >> 28 == 0xF { return "a reserved (240/4) address" }
        if a >> 16 == 0xA9FE { return "a link-local address" }
        if a >> 24 == 0 { return "in 0.0.0.0/8 (\"this network\")" }
        return nil
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        (a.isV6 ? 1 : 0, a.high, a.low) < (b.isV6 ? 1 : 0, b.high, b.low)
    }

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (with `::` and a trailing dotted quad).
    public init?(_ text: some StringProtocol) {
        if let v4 = IPAddress.parseV4(Substring(text)) {
            self.init(v4: v4)
        } else if let (high, low) = IPAddress.parseV6(Substring(text)) {
            self.init(high: high, low: low, isV6: true)
        } else {
            return nil
        }
    }

    static func parseV4(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                part.count == 1 || part.first != "0", let octet = UInt32(part), octet <= 255
            else { return nil }
            value = value << 8 | octet
        }
        return value
    }

    static func parseV6(_ text: Substring) -> (UInt64, UInt64)? {
        var groups: [UInt16] = []
        var gapAt: Int? = nil
        let halves = text.split(separator: "::", omittingEmptySubsequences: false)
        guard halves.count <= 2, !text.isEmpty else { return nil }
        func parseGroups(_ s: Substring, allowV4Tail: Bool) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            let fields = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, field) in fields.enumerated() {
                if allowV4Tail, i == fields.count - 1, field.contains("."), let v4 = parseV4(field) {
                    out.append(UInt16(v4 >> 16))
                    out.append(UInt16(v4 & 0xFFFF))
                } else {
                    guard (1...4).contains(field.count), field.allSatisfy({ $0.isHexDigit }),
                        let g = UInt16(field, radix: 16)
                    else { return nil }
                    out.append(g)
                }
            }
            return out
        }
        if halves.count == 2 {
            guard let head = parseGroups(halves[0], allowV4Tail: false),
                let tail = parseGroups(halves[1], allowV4Tail: true), head.count + tail.count <= 7
            else { return nil }
            groups = head
            gapAt = head.count
            groups += tail
        } else {
            guard let all = parseGroups(text, allowV4Tail: true), all.count == 8 else { return nil }
            groups = all
        }
        if let gap = gapAt {
            groups.insert(contentsOf: [UInt16](repeating: 0, count: 8 - groups.count), at: gap)
        }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<4 { high = high << 16 | UInt64(groups[i]) }
        for i in 4..<8 { low = low << 16 | UInt64(groups[i]) }
        return (high, low)
    }

    /// Dotted quad, or RFC 5952 text: lower case, the longest run (of two or more) of zero groups
    /// shortened to `::`.
    public var description: String {
        if !isV6 {
            let v = v4Value
            return "\(v >> 24).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF)"
        }
        let groups =
            (0..<4).map { UInt16(truncatingIfNeeded: high >> (48 - 16 * $0)) }
            + (0..<4).map { UInt16(truncatingIfNeeded: low >> (48 - 16 * $0)) }
        var best = (start: -1, length: 0)
        var i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > best.length { best = (i, j - i) }
                i = j
            } else {
                i += 1
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        if best.length < 2 { return hex.joined(separator: ":") }
        let head = hex[0..<best.start].joined(separator: ":")
        let tail = hex[(best.start + best.length)...].joined(separator: ":")
        return head + "::" + tail
    }
}

/// A 48-bit Ethernet address, held in the low 48 bits in network order.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public var value: UInt64

    @inlinable
    public init(value: UInt64) { self.value = value & 0xFFFF_FFFF_FFFF }

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`).
    public init?(_ text: some StringProtocol) {
        let parts = String(text).split(
            omittingEmptySubsequences: false, whereSeparator: { (c: Character) in c == ":" || c == "-" }
        ).map(String.init)
        guard parts.count == 6 else { return nil }
        var v: UInt64 = 0
        for part in parts {
            guard part.count == 2, part.allSatisfy({ $0.isHexDigit }), let b = UInt64(part, radix: 16) else {
                return nil
            }
            v = v << 8 | b
        }
        self.init(value: v)
    }

    /// Why frames could not be sent to or from this address, or nil for an ordinary unicast MAC.
    public var notUnicastReason: String? {
        if value == 0 { return "the all-zero address" }
        if value >> 40 & 1 == 1 { return value == 0xFFFF_FFFF_FFFF ? "the broadcast address" : "a multicast address" }
        return nil
    }

    @inlinable @inline(__always)
    public func store(to p: UnsafeMutableRawPointer, offset: Int) {
        p.storeBE16(UInt16(truncatingIfNeeded: value >> 32), at: offset)
        p.storeBE32(UInt32(truncatingIfNeeded: value), at: offset + 2)
    }

    public var description: String {
        (0..<6).map { i -> String in
            let b = UInt8(truncatingIfNeeded: value >> (40 - 8 * i))
            return (b < 16 ? "0" : "") + String(b, radix: 16)
        }.joined(separator: ":")
    }
}
