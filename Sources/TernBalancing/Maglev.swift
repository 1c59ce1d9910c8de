// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016, section 3.4), with weights.
//
// Each backend has a permutation of the M table slots given by (offset + j * skip) mod M; backends
// take turns claiming their next unclaimed preferred slot until the table is full. Weights decide
// how many turns a backend gets: in round r a backend of weight w has had its turn k times while
// k * maxWeight < r * w; within a round, backends go in address order. A backend of weight 0 gets
// no slots (drained).
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

    /// Fills `table` (its count is M, a prime) with indices into `backends`; false (and the table
    /// unfinished) when `shouldStop`, asked every 65536 slots, says to give up.
    ///
    /// The rounds are not run one by one (with skewed weights, 10,000 backends of weight 1 and one of
    /// 65535, that visits every backend in each of ~M rounds: 78 s). A backend that has had t turns
    /// gets its next one in round floor(t * maxWeight / weight) + 1, so the turns are taken from a
    /// min-heap keyed by (round, position in address order): the same order, and the same table, as
    /// the rounds give, in O(M log N) whatever the weights.
    @discardableResult
    public static func build(
        backends: [(address: IPAddress, weight: Int)], into table: UnsafeMutableBufferPointer<UInt16>,
        shouldStop: () -> Bool = { false }
    ) -> Bool {
        let m = table.count
        precondition(m >= 2 && backends.count < Int(emptySlot), "table size or backend count out of range")
        table.update(repeating: emptySlot)
        // Address order makes the turn order, and so the table, independent of the config's order.
        let order = backends.indices.filter { backends[$0].weight > 0 }.sorted {
            backends[$0].address < backends[$1].address
        }
        guard let maxWeight = order.map({ backends[$0].weight }).max() else { return true }
        var position = order.map { permutation(of: backends[$0].address, tableSize: m).offset }
        let skip = order.map { permutation(of: backends[$0].address, tableSize: m).skip }
        let weight = order.map { backends[$0].weight }
        var turns = [Int](repeating: 0, count: order.count)
        // Keys are round << 16 | k (k < 65535; rounds stay below M * 65535 + 1 < 2^40). Every
        // backend's first turn is in round 1, and keys in ascending order already form a heap.
        var heap = TurnHeap(keys: order.indices.map { UInt64(1) << 16 | UInt64($0) })
        var filled = 0
        while filled < m {
            let k = Int(truncatingIfNeeded: heap.top & 0xFFFF)
            var slot = position[k]
            while table[slot] != emptySlot {
                slot += skip[k]
                if slot >= m { slot -= m }
            }
            table[slot] = UInt16(order[k])
            slot += skip[k]
            position[k] = slot >= m ? slot - m : slot
            turns[k] += 1
            filled += 1
            heap.replaceTop(with: UInt64(turns[k] * maxWeight / weight[k] + 1) << 16 | UInt64(k))
            if filled & 0xFFFF == 0 && shouldStop() { return false }
        }
        return true
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

/// A binary min-heap of turn keys (only the top is ever replaced: a turn is taken, the next is due).
struct TurnHeap {
    private var keys: [UInt64]

    init(keys: [UInt64]) { self.keys = keys }

    var top: UInt64 { keys[0] }

    mutating func replaceTop(with key: UInt64) {
        var i = 0
        let n = keys.count
        while true {
            let left = 2 * i + 1
            guard left < n else { break }
            let right = left + 1
            let child = right < n && keys[right] < keys[left] ? right : left
            guard keys[child] < key else { break }
            keys[i] = keys[child]
            i = child
        }
        keys[i] = key
    }
}
