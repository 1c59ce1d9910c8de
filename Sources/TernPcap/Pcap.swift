// Classic libpcap files (not pcapng): microsecond and nanosecond magic, either byte order, Ethernet
// link type. `PcapReader` and `PcapWriter` stream record by record (simulate); `Pcap.parse` and
// `Pcap.read` hold a whole capture (tests, bench preload their packets).

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
    /// Larger captured lengths mark a corrupt file (libpcap's own limit is 262,144).
    static let maxCaptured = 262_144

    /// Parses a pcap file's bytes; a truncated last record is an error here (`PcapReader` reports
    /// it instead). `name` is only used in error messages.
    public static func parse(_ bytes: [UInt8], name: String = "pcap") throws(PcapError) -> [PcapRecord] {
        guard bytes.count >= 24 else {
            throw PcapError("\(name): not a pcap file (\(bytes.count) bytes, a pcap header needs 24)")
        }
        // The bytes stay alive (and in place) while the reader reads them through fmemopen.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        defer { buffer.deallocate() }
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
        guard let f = fmemopen(buffer.baseAddress, bytes.count, "rb") else { throw PcapError("\(name): fmemopen failed") }
        let reader = try PcapReader(file: f, name: name, size: bytes.count)
        var records: [PcapRecord] = []
        while let r = try reader.next() { records.append(r) }
        if let t = reader.truncation { throw PcapError(t) }
        return records
    }

    /// The bytes of a pcap file (microsecond resolution unless `nanosecond`, host byte order little
    /// endian as libpcap writes it on x86).
    public static func serialize(_ records: [PcapRecord], nanosecond: Bool = false, snapLength: UInt32 = 262_144) -> [UInt8] {
        var out = header(nanosecond: nanosecond, snapLength: snapLength)
        for r in records { out += recordBytes(r, nanosecond: nanosecond) }
        return out
    }

    /// A file's 24-byte header (write it, then records: a capture written as it goes).
    public static func header(nanosecond: Bool, snapLength: UInt32) -> [UInt8] {
        var out: [UInt8] = []
        put32(nanosecond ? magicNano : magicMicro, &out)
        put16(2, &out)
        put16(4, &out)
        put32(0, &out)
        put32(0, &out)
        put32(snapLength, &out)
        put32(linkTypeEthernet, &out)
        return out
    }

    /// One record's header and bytes.
    public static func recordBytes(_ r: PcapRecord, nanosecond: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(16 + r.data.count)
        let seconds = r.timestampNanoseconds / 1_000_000_000
        let fraction = r.timestampNanoseconds % 1_000_000_000
        put32(UInt32(truncatingIfNeeded: seconds), &out)
        put32(UInt32(nanosecond ? fraction : fraction / 1000), &out)
        put32(UInt32(r.data.count), &out)
        put32(UInt32(max(r.originalLength, r.data.count)), &out)
        out += r.data
        return out
    }

    static func put32(_ v: UInt32, _ out: inout [UInt8]) {
        for k in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * k))) }
    }
    static func put16(_ v: UInt16, _ out: inout [UInt8]) { out += [UInt8(truncatingIfNeeded: v), UInt8(v >> 8)] }

    /// Reads a whole file (small captures: tests, tools).
    public static func read(path: String) throws(PcapError) -> [PcapRecord] {
        let reader = try PcapReader(path: path)
        var records: [PcapRecord] = []
        while let r = try reader.next() { records.append(r) }
        if let t = reader.truncation { throw PcapError(t) }
        return records
    }

    public static func write(_ records: [PcapRecord], path: String) throws(PcapError) {
        let writer = try PcapWriter(path: path)
        for r in records { try writer.append(r) }
        try writer.close()
    }
}

/// Reads a pcap file one record at a time, in constant memory. A last record cut short (a capture
/// stopped mid-write) ends the file, as libpcap and DPDK's net_pcap treat it; `truncation` then
/// says what was cut.
public final class PcapReader {
    let file: UnsafeMutablePointer<FILE>
    public let name: String
    let swapped: Bool
    let nano: Bool
    public private(set) var index = 0
    /// Set when the file ended inside a record: which one, and how much was missing.
    public private(set) var truncation: String?

    public convenience init(path: String) throws(PcapError) {
        guard let f = fopen(path, "rb") else { throw PcapError("\(path): \(String(cString: strerror(errno)))") }
        try self.init(file: f, name: path, size: nil)
    }

    /// Takes ownership of `file` (closed on deinit, which also runs when this init throws).
    init(file: UnsafeMutablePointer<FILE>, name: String, size: Int?) throws(PcapError) {
        self.file = file
        self.name = name
        var h = [UInt8](repeating: 0, count: 24)
        let n = h.withUnsafeMutableBytes { fread($0.baseAddress, 1, 24, file) }
        func le32(_ o: Int) -> UInt32 { UInt32(h[o]) | UInt32(h[o + 1]) << 8 | UInt32(h[o + 2]) << 16 | UInt32(h[o + 3]) << 24 }
        var problem: String? = nil
        var swapped = false
        var nano = false
        if n < 24 {
            problem = "\(name): not a pcap file (\(size ?? n) bytes, a pcap header needs 24)"
        } else {
            switch le32(0) {
            case Pcap.magicMicro: (swapped, nano) = (false, false)
            case Pcap.magicNano: (swapped, nano) = (false, true)
            case Pcap.magicMicro.byteSwapped: (swapped, nano) = (true, false)
            case Pcap.magicNano.byteSwapped: (swapped, nano) = (true, true)
            case 0x0A0D_0D0A: problem = "\(name): this is a pcapng file; convert it with `editcap -F pcap`"
            default: problem = "\(name): not a pcap file (magic 0x\(String(le32(0), radix: 16)))"
            }
            let linkType = (swapped ? le32(20).byteSwapped : le32(20)) & 0x0FFF_FFFF
            if problem == nil && linkType != Pcap.linkTypeEthernet {
                problem = "\(name): link type \(linkType) is not Ethernet (1)"
            }
        }
        self.swapped = swapped
        self.nano = nano
        // Every stored property is set: throwing now runs deinit, which closes the file.
        if let problem { throw PcapError(problem) }
    }

    deinit { fclose(file) }

    /// The next record, or nil at the end of the file (see `truncation`).
    public func next() throws(PcapError) -> PcapRecord? {
        guard truncation == nil else { return nil }
        var h = [UInt8](repeating: 0, count: 16)
        let n = h.withUnsafeMutableBytes { fread($0.baseAddress, 1, 16, file) }
        if n == 0 { return nil }
        guard n == 16 else {
            truncation = "\(name): record \(index) header truncated (\(n) of 16 bytes)"
            return nil
        }
        func u32(_ o: Int) -> UInt32 {
            let v = UInt32(h[o]) | UInt32(h[o + 1]) << 8 | UInt32(h[o + 2]) << 16 | UInt32(h[o + 3]) << 24
            return swapped ? v.byteSwapped : v
        }
        let captured = Int(u32(8))
        guard captured <= Pcap.maxCaptured else {
            throw PcapError("\(name): record \(index) claims \(captured) captured bytes (corrupt file?)")
        }
        var data = [UInt8](repeating: 0, count: captured)
        let got = data.withUnsafeMutableBytes { fread($0.baseAddress, 1, captured, file) }
        guard got == captured else {
            truncation = "\(name): record \(index) truncated: \(captured) bytes claimed, \(got) left"
            return nil
        }
        let ns = UInt64(u32(0)) * 1_000_000_000 + (nano ? UInt64(u32(4)) : UInt64(u32(4)) * 1000)
        index += 1
        return PcapRecord(timestampNanoseconds: ns, data: data, originalLength: max(Int(u32(12)), captured))
    }
}

/// Writes a pcap file record by record (microsecond resolution).
public final class PcapWriter {
    let file: UnsafeMutablePointer<FILE>
    public let path: String
    var closed = false

    public init(path: String) throws(PcapError) {
        guard let f = fopen(path, "wb") else { throw PcapError("\(path): \(String(cString: strerror(errno)))") }
        file = f
        self.path = path
        try put(Pcap.header(nanosecond: false, snapLength: 262_144))
    }

    public func append(_ r: PcapRecord) throws(PcapError) { try put(Pcap.recordBytes(r, nanosecond: false)) }

    func put(_ bytes: [UInt8]) throws(PcapError) {
        let n = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        guard n == bytes.count else { throw PcapError("\(path): write failed") }
    }

    public func close() throws(PcapError) {
        guard !closed else { return }
        closed = true
        guard fclose(file) == 0 else { throw PcapError("\(path): write failed") }
    }

    deinit { if !closed { fclose(file) } }
}
