// The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

public enum Checksum {
    /// Adds `length` bytes at `p` to a running ones'-complement sum. Big-endian 32-bit words are
    /// summed into 64 bits and folded at the end, which gives the same result as 16-bit words.
    @inlinable
    public static func add(_ p: UnsafeRawPointer, length: Int, to sum: UInt64 = 0) -> UInt64 {
        var acc = sum
        var i = 0
        while i + 4 <= length {
            acc &+= UInt64(p.be32(i))
            i += 4
        }
        if i + 2 <= length {
            acc &+= UInt64(p.be16(i))
            i += 2
        }
        if i < length {
            acc &+= UInt64(p.u8(i)) << 8
        }
        return acc
    }

    /// Folds a running sum to 16 bits (without complementing it).
    @inlinable @inline(__always)
    public static func fold(_ sum: UInt64) -> UInt16 {
        var s = (sum & 0xFFFF_FFFF) &+ (sum >> 32)
        s = (s & 0xFFFF) &+ (s >> 16)
        s = (s & 0xFFFF) &+ (s >> 16)
        s = (s & 0xFFFF) &+ (s >> 16)
        return UInt16(truncatingIfNeeded: s)
    }

    /// `fold` for a sum known to fit in 32 bits (a few 16-bit words): two folds reach 16 bits,
    /// since after the first the sum is at most 0x1FFFE.
    @inlinable @inline(__always)
    public static func fold(small sum: UInt32) -> UInt16 {
        var s = (sum & 0xFFFF) &+ (sum >> 16)
        s = (s & 0xFFFF) &+ (s >> 16)
        return UInt16(truncatingIfNeeded: s)
    }

    /// The checksum field value for data whose running sum (checksum field zeroed) is `sum`.
    @inlinable @inline(__always)
    public static func finish(_ sum: UInt64) -> UInt16 {
        ~fold(sum)
    }

    /// The checksum of `length` bytes at `p` (the checksum field inside must be zero).
    @inlinable
    public static func compute(_ p: UnsafeRawPointer, length: Int) -> UInt16 {
        finish(add(p, length: length))
    }

    /// RFC 1624 eqn. 3: the new checksum after one 16-bit word changes from `old` to `new`.
    @inlinable @inline(__always)
    public static func update(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        let sum = UInt64(~checksum) &+ UInt64(~old) &+ UInt64(new)
        return ~fold(sum)
    }

    /// The running sum of an IP address (4 or 16 bytes) for pseudo-headers.
    @inlinable @inline(__always)
    public static func sum(of address: IPAddress) -> UInt64 {
        if address.isV6 {
            return (address.high >> 32) &+ (address.high & 0xFFFF_FFFF) &+ (address.low >> 32)
                &+ (address.low & 0xFFFF_FFFF)
        }
        return address.low & 0xFFFF_FFFF
    }
}
