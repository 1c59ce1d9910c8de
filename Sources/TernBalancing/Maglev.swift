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
    /// The turns are taken round by round while most backends take one in each round (cheap: a
    /// pass over the backends per round). With skewed weights most rounds are nearly empty (10,000
    /// backends of weight 1 and one of 65535: the loop visited all 10,001 in each of ~M rounds,
    /// 78 s), so once a round gives fewer than one backend in eight a turn, the rest come from a
    /// min-heap keyed by (round, position in address order): a backend that has had t turns gets
    /// its next in round floor(t * maxWeight / weight) + 1. Same order, same table, O(M log N)
    /// whatever the weights.
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
        let n = order.count
        let state = UnsafeMutableBufferPointer<TurnState>.allocate(capacity: n)
        defer { state.deallocate() }
        for (k, b) in order.enumerated() {
            let p = permutation(of: backends[b].address, tableSize: m)
            state.initializeElement(
                at: k, to: TurnState(position: p.offset, skip: p.skip, weight: backends[b].weight, turns: 0, backend: UInt16(b)))
        }
        var filled = 0
        /// Backend k claims the next slot of its permutation that is still free.
        func turn(_ k: Int) {
            var slot = state[k].position
            let skip = state[k].skip
            while table[slot] != emptySlot {
                slot += skip
                if slot >= m { slot -= m }
            }
            table[slot] = state[k].backend
            slot += skip
            state[k].position = slot >= m ? slot - m : slot
            state[k].turns += 1
            filled += 1
        }
        var round = 0
        while true {
            round += 1
            var took = 0
            for k in 0..<n where state[k].turns * maxWeight < round * state[k].weight {
                turn(k)
                took += 1
                if filled == m { return true }
                if filled & 0xFFFF == 0 && shouldStop() { return false }
            }
            if took * 8 < n { break }
        }
        // Keys are round << 16 | k (k < 65535; rounds stay below M * 65535 + 1 < 2^40); sorted
        // keys already form a heap.
        var heap = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: n)
        defer { heap.deallocate() }
        for k in 0..<n { heap[k] = UInt64(state[k].turns * maxWeight / state[k].weight + 1) << 16 | UInt64(k) }
        heap.sort()
        while filled < m {
            let k = Int(truncatingIfNeeded: heap[0] & 0xFFFF)
            turn(k)
            replaceTop(heap, with: UInt64(state[k].turns * maxWeight / state[k].weight + 1) << 16 | UInt64(k))
            if filled & 0xFFFF == 0 && shouldStop() { return false }
        }
        return true
    }

    /// One backend's place in the turns: the next slot of its permutation to try, and how many
    /// turns it has had.
    struct TurnState {
        var position: Int
        let skip: Int
        let weight: Int
        var turns: Int
        let backend: UInt16
    }

    /// Replaces the smallest key of a binary min-heap and restores the heap.
    static func replaceTop(_ keys: UnsafeMutableBufferPointer<UInt64>, with key: UInt64) {
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
