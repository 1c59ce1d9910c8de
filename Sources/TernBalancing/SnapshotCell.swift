// Sharing the forwarding snapshot between the control thread and the workers, RCU style with
// quiescent-state-based reclamation (QSBR):
//
// - workers: once per burst, `enterBurst` reports "I hold nothing from before epoch E" and loads
//   the current snapshot pointer; nothing else (no lock, no reference count);
// - the control thread: `publish` swaps the pointer with one atomic exchange, bumps the epoch and
//   returns the old snapshot only after every online worker has reported the new epoch, so the old
//   one can be freed (or its counters read) with no worker still looking at it.
//
// Orderings: a worker's epoch store is a release after it finished with the old pointer; the
// writer's acquire load of it makes those uses happen before the free. A worker that loads epoch E
// (acquire, pairing with the writer's release increment) also sees the exchanged pointer.

import Synchronization

/// One worker's report, alone on its cache line so workers never share a line.
@usableFromInline
struct ReaderSlot: ~Copyable {
    @usableFromInline let seenEpoch = Atomic<UInt64>(ReaderSlot.offline)
    let padding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0)
    @usableFromInline static let offline = UInt64.max
}

public final class SnapshotCell: @unchecked Sendable {
    @usableFromInline let pointer: Atomic<UInt>
    @usableFromInline let epoch = Atomic<UInt64>(1)
    @usableFromInline let readers: UnsafeMutablePointer<ReaderSlot>
    public let readerCount: Int

    /// Takes ownership of `initial`; `readers` workers may read.
    public init(_ initial: consuming ForwardingSnapshot, readers: Int) {
        let p = UnsafeMutablePointer<ForwardingSnapshot>.allocate(capacity: 1)
        p.initialize(to: initial)
        pointer = Atomic(UInt(bitPattern: p))
        readerCount = readers
        let raw = UnsafeMutableRawPointer.allocate(byteCount: readers * 64, alignment: 64)
        self.readers = raw.bindMemory(to: ReaderSlot.self, capacity: readers)
        for i in 0..<readers { (self.readers + i).initialize(to: ReaderSlot()) }
    }

    deinit {
        let p = UnsafeMutablePointer<ForwardingSnapshot>(bitPattern: pointer.load(ordering: .acquiring))!
        p.deinitialize(count: 1)
        p.deallocate()
        readers.deinitialize(count: readerCount)
        UnsafeMutableRawPointer(readers).deallocate()
    }

    // MARK: worker side

    /// Call at the top of every burst: declares the worker quiescent and returns the snapshot to
    /// use for this burst (valid until the next `enterBurst` or `goOffline`).
    @inlinable @inline(__always)
    public func enterBurst(reader: Int) -> UnsafePointer<ForwardingSnapshot> {
        let e = epoch.load(ordering: .acquiring)
        readers[reader].seenEpoch.store(e, ordering: .releasing)
        return UnsafePointer(bitPattern: pointer.load(ordering: .acquiring))!
    }

    /// A stopping (or idle-sleeping) worker holds no snapshot; the writer does not wait for it.
    public func goOffline(reader: Int) {
        readers[reader].seenEpoch.store(ReaderSlot.offline, ordering: .releasing)
    }

    // MARK: control side

    /// The current snapshot, for the control thread only (it is the one that replaces it).
    public var current: UnsafePointer<ForwardingSnapshot> {
        UnsafePointer(bitPattern: pointer.load(ordering: .acquiring))!
    }

    /// Publishes `next` and waits out the grace period; returns the old snapshot, which no worker
    /// can see any more. The caller owns it (read its counters, then `retire` it).
    public func publish(_ next: consuming ForwardingSnapshot, pollMicroseconds: UInt32 = 200) -> UnsafeMutablePointer<
        ForwardingSnapshot
    > {
        let grace = swap(next)
        while !hasElapsed(grace) { usleep(pollMicroseconds) }
        return grace.old
    }

    /// A publication whose grace period may still be running: `old` must not be touched until
    /// `hasElapsed` says so.
    public struct Grace {
        public let old: UnsafeMutablePointer<ForwardingSnapshot>
        let epoch: UInt64
    }

    /// The first half of `publish`: swaps the pointer in and starts the grace period.
    public func swap(_ next: consuming ForwardingSnapshot) -> Grace {
        let p = UnsafeMutablePointer<ForwardingSnapshot>.allocate(capacity: 1)
        p.initialize(to: next)
        let old = pointer.exchange(UInt(bitPattern: p), ordering: .acquiringAndReleasing)
        let target = epoch.add(1, ordering: .acquiringAndReleasing).newValue
        return Grace(old: UnsafeMutablePointer(bitPattern: old)!, epoch: target)
    }

    /// Whether every online worker has entered a burst (or gone offline) since `grace` began.
    public func hasElapsed(_ grace: Grace) -> Bool { hasPassed(grace.epoch) }

    /// A grace period with no new snapshot: once `hasPassed` says so for what this returns, no
    /// worker still uses what it read (before this call) from another shared cell, such as a
    /// capture session cleared just before.
    public func beginGrace() -> UInt64 { epoch.add(1, ordering: .acquiringAndReleasing).newValue }

    public func hasPassed(_ target: UInt64) -> Bool {
        for i in 0..<readerCount where readers[i].seenEpoch.load(ordering: .acquiring) < target { return false }
        return true  // `offline` is above every epoch
    }

    /// Frees a snapshot `publish` returned.
    public static func retire(_ p: UnsafeMutablePointer<ForwardingSnapshot>) {
        p.deinitialize(count: 1)
        p.deallocate()
    }
}

#if canImport(Glibc)
    import Glibc
#endif
