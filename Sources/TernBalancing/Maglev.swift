// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4), with weights.
//
// Each backend has a permutation of the M table slots given by (offset + j * skip) mod M; backends
// take turns claiming their next unclaimed preferred slot until the table is full. Weights decide
// how many turns a backend gets: in round r a backend of weight w has had its turn k times while
// k * maxWeight < r * w. A backend of weight 0 gets no slots (drained).
//
// The table depends only on the set of (address, weight) pairs: backends take their turns in address
// order, and offset and skip come from a fixed hash of the address bytes, so every node, every run
// and every order of the config builds the same bytes.

import TernWire

public enum Maglev {
    /// Marks a slot no backend holds (only when no backend has a weight above 0).
    public static let emptySlot: UInt16 = 0xFFFF

    /// The backend-address hash: FNV-1a (64-bit) over the address bytes in network order (4 for
    /// IPv4, 16 for IPv6), then offset = mix(h ^ 0x6F66667365740000) mod M and
    /// skip = mix(h ^ 0x736B697000000000) mod (M - 1) + 1, `mix` being `FlowHash.mix`.
    public static func permutation(of address: IPAddress, tableSize m: Int) -> (offset: Int, skip: Int) {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in address.bytes {
            h ^= UInt64(byte)
            h &*= 0x0000_0100_0000_01B3
        }
        let offset = FlowHash.mix(h ^ 0x6F66_6673_6574_0000) % UInt64(m)
        let skip = FlowHash.mix(h ^ 0x736B_6970_0000_0000) % UInt64(m - 1) + 1
        return (Int(offset), Int(skip))
    }

    /// Fills `table` (its count is M, a prime) with indices into `backends`.
    public static func build(
        backends: [(address: IPAddress, weight: Int)], into table: UnsafeMutableBufferPointer<UInt16>
    ) {
        let m = table.count
        precondition(m >= 2 && backends.count < Int(emptySlot), "table size or backend count out of range")
        table.update(repeating: emptySlot)
        // Address order makes the turn order, and so the table, independent of the config's order.
        let order = backends.indices.filter { backends[$0].weight > 0 }.sorted {
            backends[$0].address < backends[$1].address
        }
        guard let maxWeight = order.map({ backends[$0].weight }).max() else { return }
        var position = order.map { permutation(of: backends[$0].address, tableSize: m).offset }
        let skip = order.map { permutation(of: backends[$0].address, tableSize: m).skip }
        var turns = [Int](repeating: 0, count: order.count)
        var filled = 0
        var round = 0
        while true {
            round += 1
            for k in order.indices {
                let backend = order[k]
                guard turns[k] * maxWeight < round * backends[backend].weight else { continue }
                var slot = position[k]
                while table[slot] != emptySlot {
                    slot += skip[k]
                    if slot >= m { slot -= m }
                }
                table[slot] = UInt16(backend)
                slot += skip[k]
                position[k] = slot >= m ? slot - m : slot
                turns[k] += 1
                filled += 1
                if filled == m { return }
            }
        }
    }

    /// The table as an array (for tools and tests).
    public static func build(backends: [(address: IPAddress, weight: Int)], tableSize: Int) -> [UInt16] {
        [UInt16](unsafeUninitializedCapacity: tableSize) { buffer, count in
            build(backends: backends, into: buffer)
            count = tableSize
        }
    }

    /// The slot a flow hash selects: the high half of (low 32 bits of the hash) * M, which spreads
    /// hashes evenly over M slots without a division (Lemire's "fast range").
    @inlinable @inline(__always)
    public static func slot(forHash hash: UInt64, tableSize m: Int) -> Int {
        Int(truncatingIfNeeded: ((hash & 0xFFFF_FFFF) &* UInt64(truncatingIfNeeded: m)) >> 32)
    }

    public static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        if n < 4 { return true }
        if n % 2 == 0 { return false }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }
}
