// The flow hash is a contract between nodes: its values are pinned here, for the current version
// and the one before (Tests/outside/reference.py computes the same values independently).

import CFastPath
import Testing

@testable import TernWire

@Suite struct FlowHashTests {
    static let tuples: [(FiveTuple, v2: UInt64, v1: UInt64)] = [
        (tuple("198.51.100.1", "192.0.2.10", 40000, 80, 6), 0xa106_2c4d_0f9d_6443, 0xdf25_710e_a68c_1780),
        (tuple("2001:db8:ff::1", "2001:db8::10", 40001, 443, 6), 0xb329_d64f_2452_0a74, 0x7f3e_9410_d9f7_7750),
        (tuple("10.0.0.1", "192.0.2.20", 5353, 53, 17), 0x5f0e_5291_2aad_58a5, 0xaa6d_364a_1591_13aa),
    ]

    static func tuple(_ s: String, _ d: String, _ sp: UInt16, _ dp: UInt16, _ proto: UInt8) -> FiveTuple {
        FiveTuple(source: IPAddress(s)!, destination: IPAddress(d)!, sourcePort: sp, destinationPort: dp, ipProtocol: proto)
    }

    @Test func version2ValuesArePinned() {
        #expect(FlowHash.version == 2)
        for (t, v2, _) in FlowHashTests.tuples { #expect(FlowHash.hash(t) == v2) }
    }

    @Test func version1ValuesStayPinned() {
        for (t, _, v1) in FlowHashTests.tuples { #expect(FlowHash.hashV1(t) == v1) }
    }

    @Test func theCRCStepIsCRC32CAsSpecified() {
        // CRC32C's check value: "123456789" with the standard inversions is 0xE3069283.
        let bytes = Array("123456789".utf8)
        var c: UInt32 = 0xFFFF_FFFF
        var word: UInt64 = 0
        for (i, b) in bytes.prefix(8).enumerated() { word |= UInt64(b) << (8 * UInt64(i)) }
        c = tern_crc32c_u64(c, word)
        // The ninth byte, bit by bit (the documented polynomial).
        c ^= UInt32(bytes[8])
        for _ in 0..<8 { c = (c >> 1) ^ (0x82F6_3B78 & (0 &- (c & 1))) }
        #expect(~c == 0xE306_9283)
    }

    @Test func neighbouringFlowsSpreadOverMaglevSlotsAndBuckets() {
        // 65,536 source ports of one client: slots of a 1,009-slot table and 2^12 buckets stay even.
        var slots = [Int](repeating: 0, count: 1009)
        var buckets = [Int](repeating: 0, count: 4096)
        for port in 0..<65536 {
            let h = FlowHash.hash(FlowHashTests.tuple("198.51.100.1", "192.0.2.10", UInt16(port), 443, 6))
            slots[Int(((h & 0xFFFF_FFFF) &* 1009) >> 32)] += 1
            buckets[Int(h >> 32) & 4095] += 1
        }
        #expect(slots.min()! > 30 && slots.max()! < 100)  // mean 65 (44...91 here; version 1: 34...92)
        #expect(buckets.min()! > 2 && buckets.max()! < 40)  // mean 16 (4...33 here; version 1: 4...31)
    }
}
