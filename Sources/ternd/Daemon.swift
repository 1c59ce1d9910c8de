// ternd start-up, control loop and shutdown. The main lcore runs this control thread; each worker
// lcore runs a WorkerLoop. Signals are blocked before EAL starts (its threads inherit the mask)
// and read here through a signalfd.

import TernBalancing
import TernControl
import TernDPDK
import TernDataplane
import TernTelemetry
import TernWire

#if canImport(Glibc)
import Glibc
#endif

/// Every line of `message` with the `ternd: ` prefix, in one write (a multi-line config error stays
/// together and every line says where it came from).
func log(_ message: String) {
    let text = message.split(separator: "\n", omittingEmptySubsequences: false).map { "ternd: " + $0 + "\n" }.joined()
    _ = text.withCString { write(2, $0, strlen($0)) }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

enum Daemon {
    static let exitUsage: Int32 = 64

    static func run(_ argv: [String]) -> Int32 {
        guard let signals = SignalReader() else {
            log("cannot block signals: \(String(cString: strerror(errno)))")
            return 1
        }
        let split = argv.firstIndex(of: "--") ?? argv.count
        let ealArguments = Array(argv[..<split])
        let options: Options
        switch Options.parse(Array(argv[min(split + 1, argv.count)...])) {
        case .success(let o): options = o
        case .failure(let error):
            if !error.message.isEmpty { log(error.message) }
            print(Options.usage)
            return error.message.isEmpty ? 0 : exitUsage
        }
        let config: TernConfig
        do {
            config = try ConfigLoader.load(path: options.config)
        } catch {
            log("config refused:\n" + error.description)
            return ConfigError.exitCode
        }
        if let available = MemoryBudget.availableBytes() {
            let problems = MemoryBudget.startProblems(config, available: available)
            if !problems.isEmpty {
                log("config refused:\n" + ConfigError(file: options.config, problems: problems).description)
                return ConfigError.exitCode
            }
        }
        // Causes DPDK would report badly: another process on this prefix, unreadable capture files.
        let prefix = StartupChecks.filePrefix(ealArguments)
        let lock: InstanceLock
        do {
            lock = try InstanceLock(prefix: prefix)
        } catch {
            log(error.description)
            return 1
        }
        defer { lock.release() }
        if let pid = StartupChecks.primaryHolding(prefix: prefix) {
            log("DPDK file prefix \"\(prefix)\" is in use by a running DPDK primary process (pid \(pid)); choose another --file-prefix")
            return 1
        }
        let unreadable = StartupChecks.unreadableVdevFiles(ealArguments)
        if !unreadable.isEmpty {
            log("cannot read the capture given to --vdev:\n" + unreadable.joined(separator: "\n"))
            return 1
        }
        do {
            _ = try EAL.initialize(ealArguments)
        } catch {
            log(error.description)
            return 1
        }
        defer { EAL.cleanup() }
        do {
            var daemon = try Running(config: config, options: options)
            return daemon.serve(signals: signals)
        } catch let error as StartupError {
            log(error.message)
            return error.exitCode
        } catch {
            log("\(error)")
            return 1
        }
    }
}

struct StartupError: Error {
    var message: String
    var exitCode: Int32
}

/// The running data plane and the control state around it.
struct Running {
    var config: TernConfig
    let options: Options
    let ports: [Port]
    let pool: Mempool
    let cell: SnapshotCell
    let loops: [WorkerLoop]
    var generation: UInt32 = 1
    var totals = PacketTotals()
    var reloadsOK: UInt64 = 0
    var reloadsFailed: UInt64 = 0

    init(config: TernConfig, options: Options) throws {
        self.config = config
        self.options = options
        let workers = config.dataplane.workers
        let lcores = EAL.workerLcores
        guard lcores.count >= workers else {
            throw StartupError(
                message: "\(options.config): dataplane.workers = \(workers) needs \(workers) worker lcores besides the main one; "
                    + "EAL has \(lcores.count) (use -l 0-\(workers))",
                exitCode: ConfigError.exitCode)
        }
        var ports: [Port] = []
        for (i, p) in config.ports.enumerated() {
            do {
                ports.append(try Port(named: p.device))
            } catch {
                throw StartupError(message: "\(options.config): port[\(i)].device: \(error.description)", exitCode: ConfigError.exitCode)
            }
        }
        self.ports = ports
        // Enough mbufs for every RX and TX ring plus bursts in flight and per-lcore caches.
        let descriptors = 1024
        let perQueue = 2 * descriptors + 4 * config.dataplane.burstSize
        let count = UInt32(ports.count * workers * perQueue + (workers + 1) * 256 + 1024)
        let largestFrame = (config.ports.map(\.mtu).max() ?? 1500) + 18
        pool = try Mempool(name: "tern_mbufs", count: count, cache: 256, dataRoom: UInt16(max(2048, largestFrame)))
        var rss = false
        for port in ports {
            rss = try port.configure(queues: UInt16(workers), descriptors: UInt16(descriptors), pool: pool) || rss
            try port.start()
        }
        if workers > 1 && !rss {
            log("note: the ports offer no RSS; each worker polls its own queue (virtual devices: one rx_pcap per queue)")
        }
        cell = SnapshotCell(ForwardingSnapshot(config.snapshotSpec, generation: generation, workers: workers), readers: workers)
        var loops: [WorkerLoop] = []
        for w in 0..<workers {
            let queues = config.ports.enumerated().map { i, p -> WorkerQueue in
                let backendIndex = p.backendDevice.flatMap { b in config.ports.firstIndex { $0.device == b } } ?? i
                let backend = config.ports[backendIndex]
                let context = PortContext(
                    mac: backend.mac ?? ports[backendIndex].mac, gatewayMAC: backend.gatewayMAC, mtu: backend.mtu,
                    replyMAC: p.mac ?? ports[i].mac, replyGatewayMAC: p.gatewayMAC)
                return WorkerQueue(rxPort: ports[i].id, queue: UInt16(w), backendPort: ports[backendIndex].id, context: context)
            }
            let worker = Worker(
                index: w, port: queues[0].context, flowTableEntries: config.dataplane.flowTableEntries,
                tcpIdleTimeout: UInt32(config.dataplane.tcpIdleTimeoutSeconds),
                udpIdleTimeout: UInt32(config.dataplane.udpIdleTimeoutSeconds))
            loops.append(
                WorkerLoop(
                    index: w, queues: queues, burstSize: config.dataplane.burstSize, cell: cell, worker: worker,
                    idleSleepMicroseconds: options.idleSleepMicroseconds))
        }
        self.loops = loops
        for (w, loop) in loops.enumerated() { try Lcore.launch(loop, on: lcores[w]) }
        log("started: \(config.summary); ports \(ports.map(\.name).joined(separator: ", ")); \(count) mbufs; RSS \(rss ? "on" : "off")")
    }

    /// The control loop: signals, idle stop; returns the exit status.
    mutating func serve(signals: SignalReader) -> Int32 {
        var lastProgress: UInt64 = 0
        var lastChange = monotonicSeconds()
        while true {
            let signal = signals.next(timeoutMilliseconds: 50)
            if signal == SIGHUP {
                reload(signals: signals)
            } else if let stop = signal, stop == SIGTERM || stop == SIGINT {
                log("signal \(stop): stopping")
                break
            }
            if let idle = options.stopWhenIdleSeconds {
                let progress = loops.reduce(0) { $0 + $1.progress.load(ordering: .relaxed) }
                let now = monotonicSeconds()
                if progress != lastProgress {
                    lastProgress = progress
                    lastChange = now
                } else if now - lastChange >= idle {
                    log("no packet for \(idle) s: stopping")
                    break
                }
            }
        }
        return shutdown()
    }

    /// SIGHUP: read, validate, build, publish; on any failure keep the running config.
    mutating func reload(signals: SignalReader) {
        let started = monotonicSeconds()
        let next: TernConfig
        do {
            next = try ConfigLoader.load(path: options.config)
        } catch {
            reloadsFailed += 1
            log("reload failed, keeping the running config:\n" + error.description)
            return
        }
        let restartOnly = config.restartOnlyChanges(to: next)
        guard restartOnly.isEmpty else {
            reloadsFailed += 1
            log("reload refused, keeping the running config: restart-only keys changed: \(restartOnly.joined(separator: ", "))")
            return
        }
        if let available = MemoryBudget.availableBytes() {
            let problems = MemoryBudget.reloadProblems(next, available: available)
            if !problems.isEmpty {
                reloadsFailed += 1
                log("reload refused, keeping the running config:\n" + ConfigError(file: options.config, problems: problems).description)
                return
            }
        }
        // A SIGTERM during a long build stops the build; the control loop then reads it and stops.
        guard
            let snapshot = ForwardingSnapshot(
                next.snapshotSpec, generation: generation &+ 1, workers: config.dataplane.workers,
                shouldStop: { signals.stopPending })
        else {
            reloadsFailed += 1
            log("reload abandoned: a stop signal arrived while the tables were built; keeping the running config")
            return
        }
        generation &+= 1
        let built = monotonicSeconds()
        let old = cell.publish(snapshot)
        let published = monotonicSeconds()
        totals.add(old.pointee)
        SnapshotCell.retire(old)
        config = next
        reloadsOK += 1
        log(
            "reload ok: \(next.vips.count) VIPs, \(next.backendCount) backends; built in \(ms(built - started)) ms, "
                + "published in \(ms(published - built)) ms (generation \(generation))")
    }

    func ms(_ seconds: Double) -> String {
        let hundredths = Int((seconds * 100_000).rounded())
        return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
    }

    /// Stops workers (they flush TX before returning), closes ports, reports, frees.
    mutating func shutdown() -> Int32 {
        for loop in loops { loop.requestStop() }
        Lcore.waitAll()
        totals.add(cell.current.pointee)
        var outcomes = OutcomeCounters()
        var flows = FlowTableCounters()
        var io = IOCounters()
        for loop in loops {
            outcomes = outcomes + loop.worker.pointee.counters
            flows = flows + loop.worker.pointee.flows.counters
            io.rx += loop.io.rx
            io.tx += loop.io.tx
            io.txFailed += loop.io.txFailed
        }
        for port in ports { port.stopAndClose() }
        let inUse = pool.inUse
        let report = TrafficReport(
            outcomes: outcomes, totals: totals, flows: flows,
            extra: [("tx", io.tx), ("tx_failed", io.txFailed), ("mbufs_in_use", UInt64(inUse)), ("workers", UInt64(loops.count))],
            extraObjects: [("reloads", [("ok", reloadsOK), ("failed", reloadsFailed)])])
        let json = report.json
        print(json)
        var status: Int32 = 0
        if let path = options.statsJSON {
            if let f = fopen(path, "w") {
                fputs(json + "\n", f)
                fclose(f)
            } else {
                log("cannot write \(path): \(String(cString: strerror(errno)))")
                status = 1
            }
        }
        if io.rx != outcomes.received {
            log("BUG: rx \(io.rx) != sum of verdicts \(outcomes.received)")
            status = 1
        }
        if inUse != 0 {
            log("BUG: \(inUse) mbufs still in use after stop")
            status = 1
        }
        pool.free()
        return status
    }
}
