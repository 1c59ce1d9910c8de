import Testing

@testable import TernPcap

#if canImport(Glibc)
    import Glibc
#endif

let records = [
    PcapRecord(timestampNanoseconds: 1_700_000_000_123_456_000, data: [1, 2, 3, 4]),
    PcapRecord(timestampNanoseconds: 1_700_000_001_000_001_000, data: Array(0..<200), originalLength: 1500),
]

@Suite struct PcapTests {
    @Test func roundTripsMicrosecondAndNanosecondFiles() throws {
        #expect(try Pcap.parse(Pcap.serialize(records)) == records)
        var nano = records
        nano[0].timestampNanoseconds += 789
        #expect(try Pcap.parse(Pcap.serialize(nano, nanosecond: true)) == nano)
    }

    @Test func readsBigEndianFiles() throws {
        var bytes = Pcap.serialize(records)
        // Swap every 32-bit header field (and the two 16-bit version fields) to big endian.
        func swap32(_ o: Int) { bytes[o..<(o + 4)].reverse() }
        swap32(0)
        bytes[4..<6].reverse()
        bytes[6..<8].reverse()
        for o in stride(from: 8, to: 24, by: 4) { swap32(o) }
        var o = 24
        for r in records {
            for k in 0..<4 { swap32(o + 4 * k) }
            o += 16 + r.data.count
        }
        #expect(try Pcap.parse(bytes) == records)
    }

    @Test func refusesTruncatedAndForeignFiles() {
        let good = Pcap.serialize(records)
        #expect(throws: PcapError("x: record 1 truncated: 200 bytes claimed, 199 left")) {
            try Pcap.parse(Array(good.dropLast()), name: "x")
        }
        #expect(throws: PcapError("x: record 1 header truncated (6 of 16 bytes)")) {
            try Pcap.parse(Array(good[0..<50]), name: "x")
        }
        #expect(throws: PcapError("x: not a pcap file (10 bytes, a pcap header needs 24)")) {
            try Pcap.parse([UInt8](repeating: 0, count: 10), name: "x")
        }
        #expect(throws: PcapError("x: this is a pcapng file; convert it with `editcap -F pcap`")) {
            try Pcap.parse([0x0A, 0x0D, 0x0D, 0x0A] + [UInt8](repeating: 0, count: 40), name: "x")
        }
        var linux = good
        linux[20] = 113  // Linux cooked capture
        #expect(throws: PcapError("x: link type 113 is not Ethernet (1)")) { try Pcap.parse(linux, name: "x") }
    }

    @Test func writesFilesThatReadBack() throws {
        let path = "/tmp/tern-pcap-test-\(records.count).pcap"
        try Pcap.write(records, path: path)
        #expect(try Pcap.read(path: path) == records)
        #expect(throws: PcapError.self) { try Pcap.read(path: "/nonexistent/x.pcap") }
    }

    @Test func theReaderStreamsAndReportsACutLastRecordInsteadOfFailing() throws {
        let path = "/tmp/tern-pcap-test-\(getpid()).pcap"
        defer { unlink(path) }
        let good = Pcap.serialize(records)
        let cut = Array(good.dropLast(3))
        _ = cut.withUnsafeBytes { b in
            let f = fopen(path, "wb")!
            defer { fclose(f) }
            return fwrite(b.baseAddress, 1, b.count, f)
        }
        let reader = try PcapReader(path: path)
        var read: [PcapRecord] = []
        while let r = try reader.next() { read.append(r) }
        #expect(read == Array(records.dropLast()))
        #expect(reader.truncation == "\(path): record 1 truncated: 200 bytes claimed, 197 left")
    }
}
