// Flow tables that outlive ternd (`[dataplane] flow_state`): every worker's table lives in one
// shared file mapping, so the next ternd re-attaches the flows the last one placed and an
// established connection keeps its backend across a restart, even when the backend set changed
// during its life. The system calls are fenced here.
//
// Layout: a 4,096-byte header, then per worker its entries (capacity x 64 bytes) and its bucket
// metadata (one 64-byte line per 8 entries), as `FlowTable` lays them out. The header says what
// the rest is: magic, layout version, workers, capacity, entry size, the boot it was made in, and
// the flow clock's epoch (monotonic seconds at which the clock read 0). A file that does not match
// in every field is discarded (one log line) and the tables start empty. On re-attach, every entry
// is marked as from no snapshot (generation 0), so its backend is found again by address in the
// new ternd's snapshot, and the new workers' clock goes on from the epoch, so idle timeouts count
// the time ternd was away.

import CFastPath
import TernBalancing

#if canImport(Glibc)
    import Glibc
#endif

public struct FlowStateError: Error, CustomStringConvertible {
    public var description: String
    /// The place is unsuitable but nothing is wrong with the config as such (not a memory
    /// filesystem): ternd runs without kept flows and says so.
    public var onlyWarning = false
}

public final class FlowStateFile {
    static let magic: UInt64 = 0x3157_4C46_4E52_4554  // "TERNFLW1" read little-endian
    /// Raised when `FlowEntry` or the bucket metadata change shape.
    static let version: UInt32 = 1
    static let headerBytes = 4096
    /// MADV_POPULATE_WRITE (Linux 5.14), not in Glibc's Swift module.
    static let populateWrite: Int32 = 23

    public let path: String
    let base: UnsafeMutableRawPointer
    let size: Int
    /// Open and locked while this ternd runs.
    let descriptor: Int32
    let workers: Int
    let capacity: Int
    /// Whether the tables hold an earlier ternd's flows.
    public let attached: Bool
    /// The workers' flow clock at start (`WorkerLoop.clockBase`).
    public let clockBase: UInt32
    /// One line for the log: what was found and kept, or why it was discarded.
    public let summary: String

    /// Bytes the file takes for `workers` tables of `capacity` entries (rounded as FlowTable does).
    public static func bytes(workers: Int, capacity: Int) -> Int {
        headerBytes + workers * FlowTable.memoryBytes(capacity: capacity)
    }

    /// Maps (creating or re-attaching) the file for `workers` tables of `capacity` entries;
    /// `monotonicNow` is CLOCK_MONOTONIC seconds. Lives as long as the process (never unmapped:
    /// the workers write it until they stop).
    public init(path: String, workers: Int, capacity requested: Int, monotonicNow: Double) throws(FlowStateError) {
        self.path = path
        self.workers = workers
        capacity = FlowTable.roundedCapacity(requested)
        let size = FlowStateFile.bytes(workers: workers, capacity: requested)
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        var made = ""
        for part in directory.split(separator: "/") {  // mkdir -p: /run/tern/flows on a fresh /run
            made += "/" + part
            _ = mkdir(made, 0o755)
        }
        // Only in memory (tmpfs, as /run is under systemd): on a disk filesystem the kernel would
        // write the tables back and fault the workers' next writes, on the packet path.
        guard tern_is_tmpfs(directory.isEmpty ? "/" : directory) == 1 else {
            throw FlowStateError(
                description: "\(directory) is not on tmpfs: flows are not kept across restarts (put flow_state on tmpfs, "
                    + "such as /run or /dev/shm)", onlyWarning: true)
        }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw FlowStateError(description: "\(path): \(String(cString: strerror(errno)))") }
        descriptor = fd
        self.size = size
        // Held (the descriptor stays open) while this ternd runs: two ternds never share one file.
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw FlowStateError(description: "\(path): in use by another running ternd")
        }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_uid == geteuid() else {
            close(fd)
            throw FlowStateError(description: "\(path): not a regular file of this user")
        }
        let boot = FlowStateFile.bootID()
        var reason = "none kept"
        if st.st_size >= FlowStateFile.headerBytes {
            var header = [UInt8](repeating: 0, count: FlowStateFile.headerBytes)
            reason =
                pread(fd, &header, header.count, 0) != header.count
                ? "unreadable header"
                : Header(header).mismatch(workers: workers, capacity: capacity, boot: boot)
                    ?? (st.st_size == size ? "" : "size \(st.st_size), expected \(size)")
        } else if st.st_size > 0 {
            reason = "size \(st.st_size), expected \(size)"
        }
        let keep = reason.isEmpty
        if !keep {
            guard ftruncate(fd, 0) == 0, ftruncate(fd, off_t(size)) == 0 else {
                close(fd)
                throw FlowStateError(description: "\(path): cannot size it to \(size) bytes: \(String(cString: strerror(errno)))")
            }
        }
        guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            close(fd)
            throw FlowStateError(description: "\(path): mmap of \(size) bytes: \(String(cString: strerror(errno)))")
        }
        // Huge pages where the kernel gives them to shared memory (shmem_enabled `advise`): asked
        // before any page exists, then every page faulted in now, never on the packet path.
        _ = madvise(p, size, MADV_HUGEPAGE)
        if madvise(p, size, FlowStateFile.populateWrite) != 0 {
            for page in stride(from: 0, to: size, by: 4096) {
                let byte = p.load(fromByteOffset: page, as: UInt8.self)
                p.storeBytes(of: byte, toByteOffset: page, as: UInt8.self)
            }
        }
        base = p
        if keep {
            let started = FlowStateFile.monotonic()
            let epoch = p.load(fromByteOffset: Header.epochOffset, as: Double.self)
            clockBase = UInt32(clamping: max(1, Int((monotonicNow - epoch).rounded(.down))))
            var live = 0
            for w in 0..<workers {
                let m = FlowStateFile.memory(base: p, worker: w, capacity: capacity)
                let entries = m.entries.assumingMemoryBound(to: FlowEntry.self)
                for i in 0..<capacity { entries[i].generation = 0 }  // found again by address
                for b in 0..<(capacity / FlowTable.ways) {
                    for way in 0..<FlowTable.ways where m.meta.load(fromByteOffset: b * 64 + way * 2, as: UInt16.self) != 0 {
                        live += 1
                    }
                }
            }
            attached = true
            let ms = Int(((FlowStateFile.monotonic() - started) * 1000).rounded())
            summary =
                "re-attached \(path): \(live) flow entries of \(workers) worker(s) x \(capacity), kept \(clockBase - 1) s "
                + "(\(ms) ms)"
        } else {
            Header.write(to: p, workers: workers, capacity: capacity, boot: boot, epoch: monotonicNow - 1)
            clockBase = 1
            attached = false
            summary = "\(path): new (\(reason)); \(workers) worker(s) x \(capacity) flows, \(size >> 20) MiB"
        }
    }

    /// Worker `w`'s table memory.
    public func memory(worker w: Int) -> FlowTable.Memory { FlowStateFile.memory(base: base, worker: w, capacity: capacity) }

    static func memory(base: UnsafeMutableRawPointer, worker w: Int, capacity: Int) -> FlowTable.Memory {
        let start = base + FlowStateFile.headerBytes + w * FlowTable.memoryBytes(capacity: capacity)
        return FlowTable.Memory(entries: start, meta: start + capacity * MemoryLayout<FlowEntry>.stride)
    }

    /// Removes the file (a batch run that is over: nothing to resume); the mapping stays valid.
    public func remove() { unlink(path) }

    /// Unmaps and unlocks: tests only (ternd keeps the mapping until it exits, its workers write it).
    func closeForTests() {
        munmap(base, size)
        close(descriptor)
    }

    static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// This boot's id (the monotonic clock's epoch): a file from another boot is stale.
    static func bootID() -> [UInt8] {
        let fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 36)
        return read(fd, &buffer, 36) == 36 ? buffer : []
    }

    /// The header's fields at fixed offsets.
    struct Header {
        static let epochOffset = 32
        static let bootOffset = 64
        let magic: UInt64
        let version: UInt32
        let workers: UInt32
        let capacity: UInt64
        let stride: UInt32
        let boot: [UInt8]

        init(_ bytes: [UInt8]) {
            func word<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
                bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
            }
            magic = word(0, UInt64.self)
            version = word(8, UInt32.self)
            workers = word(12, UInt32.self)
            capacity = word(16, UInt64.self)
            stride = word(24, UInt32.self)
            boot = Array(bytes[Header.bootOffset..<(Header.bootOffset + 36)])
        }

        /// Why a file with this header cannot be re-attached, or nil.
        func mismatch(workers w: Int, capacity c: Int, boot b: [UInt8]) -> String? {
            if magic != FlowStateFile.magic { return "not a flow-state file" }
            if version != FlowStateFile.version { return "layout version \(version), this ternd's is \(FlowStateFile.version)" }
            if workers != w || capacity != c { return "\(workers) worker(s) x \(capacity) flows, now \(w) x \(c)" }
            if stride != MemoryLayout<FlowEntry>.stride { return "entries of \(stride) bytes" }
            if b.isEmpty || boot != b { return "made before the last boot" }
            return nil
        }

        static func write(to p: UnsafeMutableRawPointer, workers: Int, capacity: Int, boot: [UInt8], epoch: Double) {
            p.storeBytes(of: UInt32(FlowStateFile.version), toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: UInt32(workers), toByteOffset: 12, as: UInt32.self)
            p.storeBytes(of: UInt64(capacity), toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: UInt32(MemoryLayout<FlowEntry>.stride), toByteOffset: 24, as: UInt32.self)
            p.storeBytes(of: epoch, toByteOffset: epochOffset, as: Double.self)
            for (i, byte) in boot.enumerated() { p.storeBytes(of: byte, toByteOffset: bootOffset + i, as: UInt8.self) }
            p.storeBytes(of: FlowStateFile.magic, toByteOffset: 0, as: UInt64.self)  // last: the header is whole
        }
    }
}
