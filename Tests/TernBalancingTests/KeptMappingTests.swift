// Snapshot memory kept for the next build (`KeptMappings`): handed back by size, zeroed when
// asked, and a snapshot built in a retired one's memory holds exactly what a fresh build holds.
// Sizes are ones no other test's snapshot maps, since tests run concurrently in one process.

import CFastPath
import Testing

@testable import TernBalancing
@testable import TernWire

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct KeptMappingTests {
    @Test func aFreedMappingIsHandedBackForTheSameSizeZeroedWhenAsked() throws {
        let bytes = (13 << 20) + 4096  // maps 14 MiB
        let p = try #require(KeptMappings.shared.allocate(bytes, zeroed: true))
        #expect(p.load(fromByteOffset: bytes - 8, as: UInt64.self) == 0)
        p.initializeMemory(as: UInt8.self, repeating: 0xAB, count: bytes)
        KeptMappings.shared.free(p, bytes)
        #expect(KeptMappings.shared.keptBytes >= 14 << 20 && KeptMappings.shared.keptBytes <= 512 << 20)
        // Another size maps anew; the same mapped size gets the kept one back, with its old bytes.
        let other = try #require(KeptMappings.shared.allocate(11 << 20, zeroed: false))
        #expect(other != p)
        tern_huge_free(other, 11 << 20)
        let dirty = try #require(KeptMappings.shared.allocate(bytes - 4096, zeroed: false))
        #expect(dirty == p && dirty.load(fromByteOffset: 64, as: UInt8.self) == 0xAB)
        KeptMappings.shared.free(dirty, bytes - 4096)
        let zeroed = try #require(KeptMappings.shared.allocate(bytes, zeroed: true))
        #expect(zeroed == p && zeroed.load(fromByteOffset: 64, as: UInt8.self) == 0)
        KeptMappings.shared.free(zeroed, bytes)
    }

    /// The oldest mapping goes first, when the list is full and when the bytes would pass the
    /// limit; one larger than the whole limit is not kept at all.
    @Test func theOldestMappingIsDroppedFirstByCountAndByBytes() throws {
        let kept = KeptMappings(slots: 3, limitBytes: 20 << 20)
        let sizes = [2 << 20, 4 << 20, 6 << 20, 8 << 20]  // 20 MiB in all
        var pointers: [UnsafeMutableRawPointer] = []
        for size in sizes {
            let p = try #require(kept.allocate(size, zeroed: false))
            pointers.append(p)
        }
        for (p, size) in zip(pointers, sizes) { kept.free(p, size) }
        // Four into three slots: the 2 MiB one went; 4 + 6 + 8 MiB stay.
        #expect(kept.keptBytes == 18 << 20)
        // (Told by the bytes kept, not the address: the kernel may map a new one where the old was.)
        let again = try #require(kept.allocate(2 << 20, zeroed: false))
        #expect(kept.keptBytes == 18 << 20)  // mapped anew: nothing of that size was kept
        kept.free(again, 2 << 20)  // 20 MiB: the limit, three slots: the 4 MiB one goes
        #expect(kept.keptBytes == 16 << 20)
        // 10 MiB more: the 6 MiB one goes too (16 + 10 > 20, then 10 + 10 fits).
        let ten = try #require(kept.allocate(10 << 20, zeroed: false))
        kept.free(ten, 10 << 20)
        #expect(kept.keptBytes == 20 << 20)
        #expect(kept.allocate(8 << 20, zeroed: false) == pointers[3] && kept.keptBytes == 12 << 20)
        kept.free(pointers[3], 8 << 20)
        let huge = try #require(kept.allocate(22 << 20, zeroed: false))
        kept.free(huge, 22 << 20)  // larger than the limit: unmapped, nothing dropped
        #expect(kept.keptBytes == 20 << 20)
    }

    @Test func aSnapshotBuiltInARetiredSnapshotsMemoryHoldsWhatAFreshOneHolds() {
        // 77,777 backends over 7 VIPs: records and templates of sizes only this test maps.
        func spec(_ first: UInt32) -> SnapshotSpec {
            SnapshotSpec(
                services: (0..<7).map { v in
                    ServiceSpec(
                        address: IPAddress(v4: 0xC000_0200 &+ UInt32(v)), port: 80, ipProtocol: IPProtocol.tcp,
                        encapsulation: v % 2 == 0 ? .ipip : .gue, guePort: 6080,
                        backends: (0..<11_111).map { b in (IPAddress(v4: first &+ UInt32(v) << 16 &+ UInt32(b)), 1 + b % 3) })
                }, tableSize: 7, tunnelSourceV4: IPAddress(v4: 0x0A00_000A), tunnelSourceV6: nil)
        }
        var counters: [UInt64] = []
        do {
            let retired = ForwardingSnapshot(spec(0x0A00_0000), generation: 1, workers: 2)
            retired.counters.add(5, 7)  // a counter the next snapshot must not inherit
            counters = [retired.counters.load(5)]
        }
        let reused = ForwardingSnapshot(spec(0x0B00_0000), generation: 2, workers: 2)
        let fresh = ForwardingSnapshot(spec(0x0B00_0000), generation: 2, workers: 2)
        #expect(counters == [7] && (0..<reused.counters.count).allSatisfy { reused.counters.load($0) == 0 })
        #expect(memcmp(reused.templates, fresh.templates, reused.backends.count * EncapTemplate.size) == 0)
        #expect(
            reused.backends.indices.allSatisfy { i in
                reused.backends[i].address == fresh.backends[i].address && reused.backends[i].weight == fresh.backends[i].weight
                    && reused.backends[i].counterID == fresh.backends[i].counterID
            })
    }
}
