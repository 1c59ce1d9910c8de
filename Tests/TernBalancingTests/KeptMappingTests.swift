// Snapshot memory kept for the next build (`tern_kept_alloc`): handed back by size, zeroed when
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
        let p = try #require(tern_kept_alloc(bytes, 1))
        #expect(p.load(fromByteOffset: bytes - 8, as: UInt64.self) == 0)
        p.initializeMemory(as: UInt8.self, repeating: 0xAB, count: bytes)
        tern_kept_free(p, bytes)
        #expect(tern_kept_bytes() >= 14 << 20 && tern_kept_bytes() <= 512 << 20)
        // Another size maps anew; the same mapped size gets the kept one back, with its old bytes.
        let other = try #require(tern_kept_alloc(11 << 20, 0))
        #expect(other != p)
        tern_huge_free(other, 11 << 20)
        let dirty = try #require(tern_kept_alloc(bytes - 4096, 0))
        #expect(dirty == p && dirty.load(fromByteOffset: 64, as: UInt8.self) == 0xAB)
        tern_kept_free(dirty, bytes - 4096)
        let zeroed = try #require(tern_kept_alloc(bytes, 1))
        #expect(zeroed == p && zeroed.load(fromByteOffset: 64, as: UInt8.self) == 0)
        tern_kept_free(zeroed, bytes)
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
