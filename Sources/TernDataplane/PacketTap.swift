// Packet capture's handoff between the workers and the control thread (`ternctl capture`). While
// no capture runs, a worker pays one relaxed load of `PacketTap.session` per burst. During one,
// each worker copies the frames it selects into its own `CaptureRing` (single producer), and the
// control thread drains the rings into the pcap file (single consumer). A full ring drops the
// copy, never the packet, and counts it. The session's memory is freed only after the control
// thread cleared `session` and every worker started a burst since (the snapshot cell's grace).

import Synchronization
import TernMetrics

#if canImport(Glibc)
    import Glibc
#endif

/// Where workers find the running capture: 0, or the address of a `CaptureSession`.
public final class PacketTap: @unchecked Sendable {
    public let session = Atomic<UInt>(0)
    public init() {}

    /// The running session, if any (a worker, once per burst).
    @inlinable @inline(__always)
    public func current() -> UnsafeMutablePointer<CaptureSession>? {
        UnsafeMutablePointer(bitPattern: session.load(ordering: .acquiring))
    }
}

/// What a capture selects and where each worker puts its copies.
public struct CaptureSession {
    /// libpcap's compiled filter (`tern_filter_compile`), matched against each received frame as
    /// it arrived; nil: every frame.
    public let filter: OpaquePointer?
    /// Only frames received on this DPDK port (-1: any).
    public let port: Int
    /// Bytes kept of each frame.
    public let snapLength: Int
    /// One ring per worker, by worker index.
    public let rings: UnsafeMutablePointer<CaptureRing>
    public let workers: Int

    public init(filter: OpaquePointer?, port: Int, snapLength: Int, workers: Int, ringBytes: Int) {
        self.filter = filter
        self.port = port
        self.snapLength = snapLength
        self.workers = workers
        rings = .allocate(capacity: workers)
        for w in 0..<workers { (rings + w).initialize(to: CaptureRing(bytes: ringBytes)) }
    }

    /// Frees the rings (not the filter: its owner frees it). Only after the grace period.
    public func deallocate() {
        for w in 0..<workers { rings[w].deallocate() }
        rings.deallocate()
    }
}

/// One worker's copies: records of a 16-byte header (wall-clock nanoseconds, bytes kept, frame
/// length) and the bytes, each padded to 16, in a power-of-two byte ring. `head` and `tail` are
/// byte counts that only grow; a record never wraps: a header with `kept == wrapMarker` says the
/// rest of the ring is unused.
public struct CaptureRing {
    let buffer: UnsafeMutableRawPointer
    let mask: Int
    /// [0] head (the worker's, released after a record), [1] tail (the control thread's),
    /// [2] copies dropped (ring full), [3] copies made: each on its writer's terms.
    let indices: Counters
    static let wrapMarker = UInt32.max

    init(bytes: Int) {
        var size = 4096
        while size < bytes { size <<= 1 }
        buffer = .allocate(byteCount: size, alignment: 64)
        mask = size - 1
        indices = Counters.allocate(count: 8)
    }

    func deallocate() {
        buffer.deallocate()
        indices.deallocate()
    }

    /// Copies made and dropped so far.
    public var copied: UInt64 { indices.load(3) }
    public var dropped: UInt64 { indices.load(2) }

    /// The worker: appends a frame (at most `snapLength` of its bytes); false when the ring had no
    /// room (counted).
    @discardableResult
    public func push(_ frame: UnsafeRawPointer, length: Int, snapLength: Int, nanoseconds: UInt64) -> Bool {
        let kept = min(length, snapLength)
        let need = 16 &+ ((kept &+ 15) & ~15)
        let size = mask &+ 1
        let head = Int(indices.load(0))
        let tail = Int(indices.loadAcquiring(1))
        let offset = head & mask
        let skip = size &- offset < need ? size &- offset : 0
        guard need &+ skip <= size &- (head &- tail) else {
            indices.add(2)
            return false
        }
        if skip > 0 { (buffer + offset).storeBytes(of: CaptureRing.wrapMarker, toByteOffset: 8, as: UInt32.self) }
        let record = buffer + ((head &+ skip) & mask)
        record.storeBytes(of: nanoseconds, as: UInt64.self)
        record.storeBytes(of: UInt32(kept), toByteOffset: 8, as: UInt32.self)
        record.storeBytes(of: UInt32(length), toByteOffset: 12, as: UInt32.self)
        (record + 16).copyMemory(from: frame, byteCount: kept)
        indices.add(3)
        indices.addReleasing(0, UInt64(skip &+ need))
        return true
    }

    /// The control thread: hands each record written so far to `body` (nanoseconds, the bytes
    /// kept, the frame's length), then frees their room.
    public func drain(_ body: (UInt64, UnsafeRawBufferPointer, Int) -> Void) {
        let head = Int(indices.loadAcquiring(0))
        var tail = Int(indices.load(1))
        while tail < head {
            let record = buffer + (tail & mask)
            let kept = record.load(fromByteOffset: 8, as: UInt32.self)
            if kept == CaptureRing.wrapMarker {
                tail += mask + 1 - (tail & mask)
                continue
            }
            let length = Int(record.load(fromByteOffset: 12, as: UInt32.self))
            body(record.load(as: UInt64.self), UnsafeRawBufferPointer(start: record + 16, count: Int(kept)), length)
            tail += 16 + ((Int(kept) + 15) & ~15)
        }
        indices.addReleasing(1, UInt64(tail) - indices.load(1))
    }
}

extension CaptureSession {
    /// The wall clock in nanoseconds (a capture's timestamps; once per burst while one runs).
    public static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
    }
}
