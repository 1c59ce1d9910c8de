// `ternctl capture`: ternd writes frames a running data plane handles to a pcap file, on the
// control thread. A capture is bounded in packets, seconds and bytes per frame; it selects frames
// with libpcap's filter language on the frame as received, and records each as the burst left it
// (encapsulated toward its backend, answered, or as received when dropped or for the host), with
// wall-clock timestamps in nanoseconds. Workers pay one load per burst while none runs
// (PacketTap). One capture at a time; the file is created new (never overwritten), mode 0600.

import CPcap
import Logging
import TernBalancing
import TernConfig
import TernDataplane
import TernPcap

#if canImport(Glibc)
    import Glibc
#endif

/// What `capture` asks, checked (`CaptureRequest.init(arguments:)`).
public struct CaptureRequest: Equatable, Sendable {
    public var file: String
    public var filter: String
    /// A DPDK port index, or -1 for every port.
    public var port: Int
    public var count: Int
    public var seconds: Int
    public var snapLength: Int

    public static let counts = 1...10_000_000
    public static let durations = 1...86_400
    public static let snapLengths = 64...65_535

    /// From the control protocol's string arguments; says which one is wrong and why.
    public init(arguments a: [String: String]) throws(ControlFailure) {
        guard let file = a["file"], file.hasPrefix("/") else {
            throw ControlFailure("capture needs file=PATH, an absolute path (ternctl makes it absolute)")
        }
        func number(_ key: String, _ range: ClosedRange<Int>, _ fallback: Int) throws(ControlFailure) -> Int {
            guard let text = a[key] else { return fallback }
            guard let n = Int(text), range.contains(n) else {
                throw ControlFailure(
                    "capture: \(key) must be \(range.lowerBound)-\(range.upperBound), got \(escapedForMessage(text))")
            }
            return n
        }
        self.file = file
        filter = a["filter"] ?? ""
        port = try number("port", -1...1023, -1)
        count = try number("count", Self.counts, 1000)
        seconds = try number("seconds", Self.durations, 60)
        snapLength = try number("snaplen", Self.snapLengths, 65_535)
    }

    public var arguments: [String: String] {
        [
            "file": file, "filter": filter, "port": String(port), "count": String(count), "seconds": String(seconds),
            "snaplen": String(snapLength),
        ]
    }
}

/// Where a capture stands (`capture`, `capture-status`, `capture-stop` answer with it).
public struct CaptureStatus: Codable, Sendable, Equatable {
    public var ok = true
    public var running: Bool
    public var file: String
    public var filter: String
    /// Frames written to the file.
    public var packets: Int
    /// Frames selected that found their worker's ring full (not in the file; never a lost packet).
    public var dropped: UInt64
    public var seconds: Double
    /// Why it ended: "count", "time", "stopped", "shutdown" ("" while running).
    public var ended: String

    public init(running: Bool, file: String, filter: String, packets: Int, dropped: UInt64, seconds: Double, ended: String) {
        self.running = running
        self.file = file
        self.filter = filter
        self.packets = packets
        self.dropped = dropped
        self.seconds = seconds
        self.ended = ended
    }
}

public final class PacketCapture {
    let tap: PacketTap
    let cell: SnapshotCell
    let workers: Int
    let ports: Int
    let clock: () -> Double
    let log: (Logger.Level, String) -> Void
    /// Bytes of each worker's ring.
    let ringBytes: Int

    final class Run {
        let request: CaptureRequest
        let session: UnsafeMutablePointer<CaptureSession>
        let filter: OpaquePointer?
        let fd: Int32
        let started: Double
        var packets = 0
        var ended = ""
        /// A write failed: nothing more goes to the file.
        var failed = false
        /// Set once the tap is cleared: the grace period to wait out before freeing the session.
        var grace: UInt64?

        init(
            request: CaptureRequest, session: UnsafeMutablePointer<CaptureSession>, filter: OpaquePointer?, fd: Int32,
            started: Double
        ) {
            self.request = request
            self.session = session
            self.filter = filter
            self.fd = fd
            self.started = started
        }

        var dropped: UInt64 { (0..<session.pointee.workers).reduce(0) { $0 + session.pointee.rings[$1].dropped } }
    }
    var run: Run?
    var last: CaptureStatus?

    public init(
        tap: PacketTap, cell: SnapshotCell, workers: Int, ports: Int, clock: @escaping () -> Double,
        log: @escaping (Logger.Level, String) -> Void, ringBytes: Int = 4 << 20
    ) {
        self.tap = tap
        self.cell = cell
        self.workers = workers
        self.ports = ports
        self.clock = clock
        self.log = log
        self.ringBytes = ringBytes
    }

    /// Starts a capture: the filter compiles, the file is new, the port exists, none runs.
    public func start(_ r: CaptureRequest) -> ControlResponse {
        if let run {
            return .failure("a capture to \(run.request.file) is running: wait for it or stop it (ternctl capture --stop)")
        }
        if r.port >= ports { return .failure("capture: no port \(r.port) (ports 0-\(ports - 1))") }
        var error = [CChar](repeating: 0, count: 512)
        var filter: OpaquePointer? = nil
        if !r.filter.isEmpty {
            guard let compiled = tern_filter_compile(r.filter, &error, error.count) else {
                return .failure(
                    "capture: filter \"\(escapedForMessage(r.filter))\": \(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))"
                )
            }
            filter = OpaquePointer(compiled)
        }
        let fd = open(r.file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let why = errno == EEXIST ? "it exists (a capture never overwrites a file)" : String(cString: strerror(errno))
            tern_filter_free(UnsafeMutableRawPointer(filter))
            return .failure("capture: cannot create \(r.file): \(why)")
        }
        let session = UnsafeMutablePointer<CaptureSession>.allocate(capacity: 1)
        session.initialize(
            to: CaptureSession(filter: filter, port: r.port, snapLength: r.snapLength, workers: workers, ringBytes: ringBytes))
        let run = Run(request: r, session: session, filter: filter, fd: fd, started: clock())
        self.run = run
        write(run, Pcap.header(nanosecond: true, snapLength: UInt32(r.snapLength)))
        tap.session.store(UInt(bitPattern: session), ordering: .releasing)
        log(.info, "capture started: \(r.file), filter \"\(r.filter)\", \(r.count) packets or \(r.seconds) s at most")
        return .capture(status())
    }

    /// The status when no capture ever ran.
    public static let none = CaptureStatus(running: false, file: "", filter: "", packets: 0, dropped: 0, seconds: 0, ended: "")

    public func status() -> CaptureStatus {
        guard let run else { return last ?? PacketCapture.none }
        return CaptureStatus(
            running: true, file: run.request.file, filter: run.request.filter, packets: run.packets, dropped: run.dropped,
            seconds: clock() - run.started, ended: run.ended)
    }

    /// Ends the running capture early (its file keeps what was written).
    public func stop(reason: String = "stopped") -> ControlResponse {
        guard let run else { return .failure("no capture is running") }
        if run.ended.isEmpty { end(run, reason) }
        return .capture(status())
    }

    /// Every few milliseconds on the control thread: writes what the workers copied, ends the
    /// capture at its count or time, and frees it once no worker can still be writing.
    public func tick() {
        guard let run else { return }
        drain(run)
        if run.ended.isEmpty {
            if run.packets >= run.request.count {
                end(run, "count")
            } else if clock() - run.started >= Double(run.request.seconds) {
                end(run, "time")
            }
        }
        if let grace = run.grace, cell.hasPassed(grace) { finish(run) }
    }

    /// At shutdown: the capture ends, the workers move past it (a burst each; at most a second
    /// is waited), and the file is completed and closed.
    public func close() {
        guard let run else { return }
        if run.ended.isEmpty { end(run, "shutdown") }
        for _ in 0..<10_000 where !cell.hasPassed(run.grace!) { usleep(100) }
        if cell.hasPassed(run.grace!) {
            finish(run)
        } else {
            log(.error, "capture: the workers did not move on; \(run.request.file) left as it is")
        }
    }

    func end(_ run: Run, _ reason: String) {
        run.ended = reason
        tap.session.store(0, ordering: .releasing)
        run.grace = cell.beginGrace()
    }

    func finish(_ run: Run) {
        drain(run)
        Glibc.close(run.fd)
        let status = CaptureStatus(
            running: false, file: run.request.file, filter: run.request.filter, packets: run.packets, dropped: run.dropped,
            seconds: clock() - run.started, ended: run.ended)
        run.session.pointee.deallocate()
        run.session.deinitialize(count: 1)
        run.session.deallocate()
        tern_filter_free(UnsafeMutableRawPointer(run.filter))
        self.run = nil
        last = status
        log(
            .info,
            "capture ended (\(run.ended)): \(status.packets) packets to \(status.file)"
                + (status.dropped > 0 ? ", \(status.dropped) not captured (a worker's ring was full)" : ""))
    }

    /// Writes what the rings hold, oldest first across workers, up to the capture's count.
    func drain(_ run: Run) {
        var records: [(UInt64, [UInt8], Int)] = []
        for w in 0..<run.session.pointee.workers {
            run.session.pointee.rings[w].drain { nanoseconds, bytes, length in records.append((nanoseconds, Array(bytes), length))
            }
        }
        guard !records.isEmpty else { return }
        records.sort { $0.0 < $1.0 }
        var out: [UInt8] = []
        for (nanoseconds, bytes, length) in records.prefix(max(0, run.request.count - run.packets)) {
            out += Pcap.recordBytes(
                PcapRecord(timestampNanoseconds: nanoseconds, data: bytes, originalLength: length), nanosecond: true)
            run.packets += 1
        }
        write(run, out)
    }

    func write(_ run: Run, _ bytes: [UInt8]) {
        if run.failed { return }
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.write(run.fd, $0.baseAddress, $0.count) }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                log(.error, "capture: writing \(run.request.file): \(String(cString: strerror(errno))); capture ended")
                run.failed = true
                if run.ended.isEmpty { end(run, "write error") }
                return
            }
            done += n
        }
    }
}
