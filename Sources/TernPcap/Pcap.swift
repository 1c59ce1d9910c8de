// Classic libpcap files (not pcapng): microsecond and nanosecond magic, either byte order, Ethernet
// link type. Reads a whole file into memory (simulate, tests and bench preload their packets).

#if canImport(Glibc)
import Glibc
#endif

public struct PcapError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

public struct PcapRecord: Sendable, Equatable {
    /// Capture time in nanoseconds since the epoch.
    public var timestampNanoseconds: UInt64
    /// The captured bytes.
    public var data: [UInt8]
    /// The frame's length on the wire (at least `data.count`).
    public var originalLength: Int

    public init(timestampNanoseconds: UInt64, data: [UInt8], originalLength: Int? = nil) {
        self.timestampNanoseconds = timestampNanoseconds
        self.data = data
        self.originalLength = originalLength ?? data.count
    }
}

public enum Pcap {
    public static let linkTypeEthernet: UInt32 = 1
    static let magicMicro: UInt32 = 0xA1B2_C3D4
    static let magicNano: UInt32 = 0xA1B2_3C4D

    /// Parses a pcap file's bytes. `name` is only used in error messages.
    public static func parse(_ bytes: [UInt8], name: String = "pcap") throws(PcapError) -> [PcapRecord] {
        guard bytes.count >= 24 else {
            throw PcapError("\(name): not a pcap file (\(bytes.count) bytes, a pcap header needs 24)")
        }
        func le32(_ o: Int) -> UInt32 {
            UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
        }
        let magic = le32(0)
        let swapped: Bool
        let nano: Bool
        switch magic {
        case magicMicro: (swapped, nano) = (false, false)
        case magicNano: (swapped, nano) = (false, true)
        case magicMicro.byteSwapped: (swapped, nano) = (true, false)
        case magicNano.byteSwapped: (swapped, nano) = (true, true)
        case 0x0A0D_0D0A:
            throw PcapError("\(name): this is a pcapng file; convert it with `editcap -F pcap`")
        default:
            throw PcapError("\(name): not a pcap file (magic 0x\(String(magic, radix: 16)))")
        }
        func u32(_ o: Int) -> UInt32 { swapped ? le32(o).byteSwapped : le32(o) }
        let linkType = u32(20) & 0x0FFF_FFFF
        guard linkType == linkTypeEthernet else {
            throw PcapError("\(name): link type \(linkType) is not Ethernet (1)")
        }
        var records: [PcapRecord] = []
        var o = 24
        var index = 0
        while o < bytes.count {
            guard bytes.count - o >= 16 else {
                throw PcapError("\(name): record \(index) header truncated at byte \(o)")
            }
            let seconds = UInt64(u32(o))
            let fraction = UInt64(u32(o + 4))
            let captured = Int(u32(o + 8))
            let original = Int(u32(o + 12))
            guard captured <= 262_144 else {
                throw PcapError("\(name): record \(index) claims \(captured) captured bytes (corrupt file?)")
            }
            guard bytes.count - o - 16 >= captured else {
                throw PcapError("\(name): record \(index) truncated: \(captured) bytes claimed, \(bytes.count - o - 16) left")
            }
            let ns = seconds * 1_000_000_000 + (nano ? fraction : fraction * 1000)
            records.append(
                PcapRecord(timestampNanoseconds: ns, data: Array(bytes[(o + 16)..<(o + 16 + captured)]),
                    originalLength: max(original, captured)))
            o += 16 + captured
            index += 1
        }
        return records
    }

    /// The bytes of a pcap file (microsecond resolution unless `nanosecond`, host byte order little
    /// endian as libpcap writes it on x86).
    public static func serialize(_ records: [PcapRecord], nanosecond: Bool = false, snapLength: UInt32 = 262_144) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(24 + records.reduce(0) { $0 + 16 + $1.data.count })
        func put32(_ v: UInt32) { for k in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * k))) } }
        func put16(_ v: UInt16) { out.append(UInt8(truncatingIfNeeded: v)); out.append(UInt8(v >> 8)) }
        put32(nanosecond ? magicNano : magicMicro)
        put16(2)
        put16(4)
        put32(0)
        put32(0)
        put32(snapLength)
        put32(linkTypeEthernet)
        for r in records {
            let seconds = r.timestampNanoseconds / 1_000_000_000
            let fraction = r.timestampNanoseconds % 1_000_000_000
            put32(UInt32(truncatingIfNeeded: seconds))
            put32(UInt32(nanosecond ? fraction : fraction / 1000))
            put32(UInt32(r.data.count))
            put32(UInt32(max(r.originalLength, r.data.count)))
            out.append(contentsOf: r.data)
        }
        return out
    }

    public static func read(path: String) throws(PcapError) -> [PcapRecord] {
        try parse(try readFile(path), name: path)
    }

    public static func write(_ records: [PcapRecord], path: String) throws(PcapError) {
        try writeFile(path, serialize(records))
    }

    static func readFile(_ path: String) throws(PcapError) -> [UInt8] {
        guard let f = fopen(path, "rb") else { throw PcapError("\(path): \(String(cString: strerror(errno)))") }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, f) }
            if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
            if n < chunk.count {
                if ferror(f) != 0 { throw PcapError("\(path): read error") }
                return bytes
            }
        }
    }

    static func writeFile(_ path: String, _ bytes: [UInt8]) throws(PcapError) {
        guard let f = fopen(path, "wb") else { throw PcapError("\(path): \(String(cString: strerror(errno)))") }
        let n = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        let closed = fclose(f)
        guard n == bytes.count, closed == 0 else { throw PcapError("\(path): write failed") }
    }
}
