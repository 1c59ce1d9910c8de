// Big-endian loads and stores on raw packet memory.
//
// This is one of the few files in TernWire that touches raw pointers directly. Every caller checks
// the offset it passes against the buffer length first (see Parse.swift); these helpers only
// spell out the unaligned access and the byte order once.

extension UnsafeRawPointer {
    @inlinable @inline(__always)
    public func be16(_ offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable @inline(__always)
    public func be32(_ offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inlinable @inline(__always)
    public func be64(_ offset: Int) -> UInt64 {
        UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }

    /// Two bytes as they are on the wire (network order), for comparing with a constant's
    /// `.bigEndian`: no byte swap.
    @inlinable @inline(__always)
    public func wire16(_ offset: Int) -> UInt16 {
        loadUnaligned(fromByteOffset: offset, as: UInt16.self)
    }

    @inlinable @inline(__always)
    public func u8(_ offset: Int) -> UInt8 {
        load(fromByteOffset: offset, as: UInt8.self)
    }
}

extension UnsafeMutableRawPointer {
    @inlinable @inline(__always)
    public func storeBE16(_ value: UInt16, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    @inlinable @inline(__always)
    public func storeBE32(_ value: UInt32, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }

    @inlinable @inline(__always)
    public func storeBE64(_ value: UInt64, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt64.self)
    }

    @inlinable @inline(__always)
    public func storeU8(_ value: UInt8, at offset: Int) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }
}
