import TernTestSupport
import Testing

@testable import TernBalancing
@testable import TernWire

func backends(_ n: Int, weight: Int = 100, base: UInt32 = 0x0A01_0000) -> [(address: IPAddress, weight: Int)] {
    (0..<n).map { (IPAddress(v4: base + UInt32($0)), weight) }
}

func slotsPerBackend(_ table: [UInt16], _ n: Int) -> [Int] {
    var counts = [Int](repeating: 0, count: n)
    for s in table where s != Maglev.emptySlot { counts[Int(s)] += 1 }
    return counts
}

/// FNV-1a over the table bytes: a fingerprint to pin the table across machines and versions.
func fingerprint(_ table: [UInt16]) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for s in table {
        for b in [UInt8(s >> 8), UInt8(s & 0xFF)] {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01B3
        }
    }
    return h
}

@Suite struct MaglevTests {
    @Test func equalWeightsGetSlotCountsWithinOnePercentOfTheIdealShare() {
        for (n, m) in [(10, 1009), (100, 65537), (1000, 100_003)] {
            let counts = slotsPerBackend(Maglev.build(backends: backends(n), tableSize: m), n)
            let ideal = Double(m) / Double(n)
            for c in counts { #expect(abs(Double(c) - ideal) <= max(1, ideal * 0.01), "n=\(n) m=\(m) count=\(c)") }
        }
    }

    @Test func weightedSharesFollowWeightsWithinTwoPercent() {
        let weights = [100, 50, 25, 200, 1, 75, 100, 300]
        let list = weights.enumerated().map { (IPAddress(v4: 0x0A00_0000 + UInt32($0.offset)), $0.element) }
        let m = 65537
        let counts = slotsPerBackend(Maglev.build(backends: list, tableSize: m), list.count)
        let total = weights.reduce(0, +)
        for (w, c) in zip(weights, counts) {
            let expected = Double(m) * Double(w) / Double(total)
            #expect(abs(Double(c) - expected) <= max(2, expected * 0.02), "weight \(w): \(c) slots, expected \(expected)")
        }
    }

    @Test func drainedBackendsGetNoSlotsAndAllDrainedLeavesTheTableEmpty() {
        var list = backends(4)
        list[2].weight = 0
        let counts = slotsPerBackend(Maglev.build(backends: list, tableSize: 1009), 4)
        #expect(counts[2] == 0 && counts.reduce(0, +) == 1009)
        let empty = Maglev.build(backends: backends(3, weight: 0), tableSize: 1009)
        #expect(empty.allSatisfy { $0 == Maglev.emptySlot })
    }

    @Test func shufflingBackendOrderChangesNothing() {
        let list = backends(50) + [(IPAddress("fc00::1")!, 30), (IPAddress("fc00::2")!, 300)]
        let reference = Maglev.build(backends: list, tableSize: 65537).map { list[Int($0)].address }
        for _ in 0..<5 {
            let shuffled = list.shuffled()
            let table = Maglev.build(backends: shuffled, tableSize: 65537).map { shuffled[Int($0)].address }
            #expect(table == reference)
        }
    }

    @Test func tableBytesArePinnedAcrossMachinesAndVersions() {
        // If this changes, every node in a fleet must be upgraded at once: change it deliberately.
        let table = Maglev.build(backends: backends(10) + [(IPAddress("fc00::1")!, 50)], tableSize: 1009)
        #expect(fingerprint(table) == 0xB2F6_1E64_0B78_AA0D)
    }

    @Test func removingOneOfAHundredBackendsMovesOnlyItsSlotsAndFewOthers() {
        let m = 65537
        let all = backends(100)
        let before = Maglev.build(backends: all, tableSize: m).map { all[Int($0)].address }
        let removed = all[37].address
        let rest = all.filter { $0.address != removed }
        let after = Maglev.build(backends: rest, tableSize: m).map { rest[Int($0)].address }
        var moved = 0
        var movedBetweenSurvivors = 0
        for (a, b) in zip(before, after) where a != b {
            moved += 1
            if a != removed { movedBetweenSurvivors += 1 }
            #expect(b != removed)
        }
        #expect(!after.contains(removed))
        #expect(Double(moved) < 0.025 * Double(m), "moved \(moved) of \(m)")
        #expect(Double(movedBetweenSurvivors) < 0.015 * Double(m), "moved between survivors \(movedBetweenSurvivors)")
    }

    @Test func slotForHashStaysInRangeAndSpreadsEvenly() {
        let m = 1009
        var counts = [Int](repeating: 0, count: m)
        var h: UInt64 = 1
        for _ in 0..<(m * 200) {
            h = FlowHash.mix(h)
            let s = Maglev.slot(forHash: h, tableSize: m)
            counts[s] += 1
        }
        #expect(counts.min()! > 120 && counts.max()! < 280)
        #expect(Maglev.slot(forHash: UInt64.max, tableSize: m) == m - 1)
    }

    @Test func recognisesPrimes() {
        #expect([2, 3, 7, 1009, 65537, 100_003].allSatisfy(Maglev.isPrime))
        #expect(![0, 1, 4, 65536, 65535, 1_000_000].contains(where: Maglev.isPrime))
    }

    /// The rounds as the paper's loop runs them, one by one: the reference the heap must match.
    func roundByRound(_ backends: [(address: IPAddress, weight: Int)], _ m: Int) -> [UInt16] {
        var table = [UInt16](repeating: Maglev.emptySlot, count: m)
        let order = backends.indices.filter { backends[$0].weight > 0 }.sorted { backends[$0].address < backends[$1].address }
        guard let maxWeight = order.map({ backends[$0].weight }).max() else { return table }
        var position = order.map { Maglev.permutation(of: backends[$0].address, tableSize: m).offset }
        let skip = order.map { Maglev.permutation(of: backends[$0].address, tableSize: m).skip }
        var turns = [Int](repeating: 0, count: order.count)
        var filled = 0
        var round = 0
        while filled < m {
            round += 1
            for k in order.indices where filled < m && turns[k] * maxWeight < round * backends[order[k]].weight {
                var slot = position[k]
                while table[slot] != Maglev.emptySlot { slot = (slot + skip[k]) % m }
                table[slot] = UInt16(order[k])
                position[k] = (slot + skip[k]) % m
                turns[k] += 1
                filled += 1
            }
        }
        return table
    }

    @Test func turnsFromTheHeapGiveTheSameTableAsRoundByRound() {
        var rng = SplitMix(seed: 7)
        for trial in 0..<40 {
            let n = 1 + Int(rng.next() % 40)
            let m = [7, 101, 1009, 4099][trial % 4]
            guard n < m else { continue }
            let list = (0..<n).map { i in
                (
                    address: IPAddress(v4: 0x0A00_0000 + UInt32(rng.next() % 100_000)),
                    weight: Int(rng.next() % 4) == 0 ? 0 : 1 + Int(rng.next() % 65535)
                )
            }
            var unique: [(address: IPAddress, weight: Int)] = []
            for b in list where !unique.contains(where: { $0.address == b.address }) { unique.append(b) }
            #expect(Maglev.build(backends: unique, tableSize: m) == roundByRound(unique, m), "trial \(trial)")
        }
    }

    @Test func skewedWeightsBuildInProportionWithoutARoundPerSlot() {
        // 10,000 backends of weight 1 and one of 65535: round by round this took 78 s.
        var list = backends(10_000, weight: 1)
        list.append((IPAddress(v4: 0x0B00_0001), 65535))
        let m = 65537
        let counts = slotsPerBackend(Maglev.build(backends: list, tableSize: m), list.count)
        #expect(counts[10_000] == m - 10_000)  // every light backend gets its one first-round turn
        #expect(counts[..<10_000].allSatisfy { $0 == 1 })
    }

    @Test func aBuildStopsWhenAskedTo() {
        let m = 1_000_003
        let table = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: m)
        defer { table.deallocate() }
        var asked = 0
        let finished = Maglev.build(backends: backends(100), into: table) {
            asked += 1
            return true
        }
        #expect(!finished && asked == 1)
        #expect(Maglev.build(backends: backends(100), into: table))
    }
}
