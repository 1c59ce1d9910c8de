// Memory for a forwarding snapshot's arrays (backend records, encapsulation templates, counters),
// on the control side. A retired snapshot's mappings are kept (up to `slots` of them and
// `limitBytes`, the oldest dropped first) and handed back for a later request of the same mapped
// size before anything is mapped anew: a reload then writes into pages the retired snapshot used
// instead of faulting in fresh ones (the kernel zeroing ~10 MB for 100,000 backends was ~3 ms of a
// 10 ms reload, bench/RESULTS.md). Memory comes from `tern_huge_alloc` (CFastPath: mmap, huge
// pages from 2 MiB up).

import CFastPath
import Synchronization

public final class KeptMappings: Sendable {
    /// The one snapshots use.
    public static let shared = KeptMappings(slots: 8, limitBytes: 512 << 20)

    /// At most this many mappings are kept, and at most `limitBytes` in all.
    let slots: Int
    let limitBytes: Int

    init(slots: Int, limitBytes: Int) {
        self.slots = slots
        self.limitBytes = limitBytes
    }

    deinit {
        kept.withLock { k in
            for m in k.mappings { tern_huge_free(m.pointer, m.size) }
        }
    }

    /// Sendable: a mapping belongs to whoever holds it (the list, or the one it was handed to).
    struct Mapping: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        /// The mapped size (`tern_mapped_size`): what a request must map to get it back.
        let size: Int
    }

    /// Oldest first. Snapshots are built and retired on the control thread, but tests build them
    /// on many threads at once: the list is behind a lock (never taken on the packet path).
    struct Kept: ~Copyable {
        var mappings: [Mapping] = []
        var total = 0

        mutating func remove(at i: Int) -> Mapping {
            let m = mappings.remove(at: i)
            total -= m.size
            return m
        }
    }

    let kept = Mutex(Kept())

    /// `bytes` of memory, page-aligned: a kept mapping of the same mapped size if there is one
    /// (holding its old bytes unless `zeroed`), else a new zeroed mapping. Nil when out of memory.
    public func allocate(_ bytes: Int, zeroed: Bool) -> UnsafeMutableRawPointer? {
        let size = tern_mapped_size(bytes)
        let reused = kept.withLock { k -> Mapping? in
            guard let i = k.mappings.firstIndex(where: { $0.size == size }) else { return nil }
            return k.remove(at: i)
        }
        guard let p = reused?.pointer else { return tern_huge_alloc(bytes) }
        if zeroed { p.initializeMemory(as: UInt8.self, repeating: 0, count: bytes) }
        return p
    }

    /// Gives memory from `allocate` back to be kept (unmapped when larger than the whole limit).
    /// What no longer fits is unmapped, oldest first, after the lock is released.
    public func free(_ p: UnsafeMutableRawPointer?, _ bytes: Int) {
        guard let p else { return }
        let size = tern_mapped_size(bytes)
        guard size <= limitBytes else {
            tern_huge_free(p, size)
            return
        }
        let freed = Mapping(pointer: p, size: size)
        let evicted = kept.withLock { k -> [Mapping] in
            var out: [Mapping] = []
            while !k.mappings.isEmpty && (k.mappings.count == slots || k.total + size > limitBytes) {
                out.append(k.remove(at: 0))
            }
            k.mappings.append(freed)
            k.total += size
            return out
        }
        for m in evicted { tern_huge_free(m.pointer, m.size) }
    }

    /// Maps `bytes`, faults every page in and keeps the mapping: a daemon's first reload then finds
    /// pages as later ones do (in this VM, first-touch pages made the first reload ~5x slower).
    public func reserve(_ bytes: Int) {
        guard let p = tern_huge_alloc(bytes) else { return }
        p.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        free(p, bytes)
    }

    /// Bytes kept for reuse now.
    public var keptBytes: Int { kept.withLock { $0.total } }
}
