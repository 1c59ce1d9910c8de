// ternd's wiring: options, config, start-up checks, EAL, the data plane (Dataplane.swift), the
// control plane (TernAgent: publisher, desired state, reloader, control loop) and the final
// report. The main lcore runs the control thread; each worker lcore runs a WorkerLoop. Signals are
// blocked before EAL starts (its threads inherit the mask) and read through a signalfd.

import Logging
import TernAgent
import TernBalancing
import TernConfig
import TernDPDK
import TernDataplane
import TernTelemetry
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

/// ternd's logger (TernLogHandler: `ternd: ` on every line, syslog priorities for the journal); its
/// level is set once from --log-level, before any other thread starts.
nonisolated(unsafe) var logger = Logger(label: "ternd") { _ in TernLogHandler(level: .info) }

func log(_ level: Logger.Level, _ message: String) { logger.log(level: level, "\(message)") }

/// swift-log's level for a DPDK one (RTE_LOG_EMERG 1 ... RTE_LOG_DEBUG 8).
func dpdkLevel(_ level: UInt32) -> Logger.Level {
    switch level {
    case 0...3: .critical
    case 4: .error
    case 5: .warning
    case 6: .notice
    case 7: .info
    default: .debug
    }
}
func log(_ message: String) { log(.info, message) }

func monotonicSeconds() -> Double { seconds(CLOCK_MONOTONIC) }
func wallSeconds() -> Double { seconds(CLOCK_REALTIME) }

func seconds(_ clock: clockid_t) -> Double {
    var ts = timespec()
    clock_gettime(clock, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Health checks hold a descriptor per backend being checked; the soft limit (1024 under systemd)
/// is the first to run out, the hard one is what the operator allows: take it all. Metrics and
/// control-socket clients are capped, so they cannot use up what the checks need.
func raiseDescriptorLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

enum Daemon {
    static let exitUsage: Int32 = 64

    static func run(_ argv: [String]) -> Int32 {
        // --help and --version work without the `--` that separates EAL's options from ternd's.
        let beforeSplit = argv.dropFirst().prefix { $0 != "--" }
        if beforeSplit.contains("--version") || argv.last == "--version" {
            print("ternd \(TernVersion.string)")
            return 0
        }
        if beforeSplit.contains("--help") || beforeSplit.contains("-h") {
            print(Options.usage)
            return 0
        }
        guard let signals = SignalReader() else {
            log(.error, "cannot block signals: \(String(cString: strerror(errno)))")
            return 1
        }
        raiseDescriptorLimit()
        let split = argv.firstIndex(of: "--") ?? argv.count
        let ealArguments = Array(argv[..<split])
        let options: Options
        switch Options.parse(Array(argv[min(split + 1, argv.count)...])) {
        case .success(let o):
            options = o
            logger.logLevel = o.logLevel
        case .failure(let error):
            if error.version {
                print("ternd \(TernVersion.string)")
                return 0
            }
            if !error.message.isEmpty { log(.error, error.message) }
            print(Options.usage)
            return error.message.isEmpty ? 0 : exitUsage
        }
        let fileConfig: TernConfig
        do {
            fileConfig = try ConfigLoader.load(path: options.config)
        } catch {
            log(.error, "config refused:\n" + error.description)
            return ConfigError.exitCode
        }
        // A fleet node's VIPs come from etcd (or its cache, or the file when neither can be used).
        if let fleet = fileConfig.fleet {
            do {
                _ = try EtcdClient(fleet)
            } catch {
                log(.error, "\(options.config): [fleet]: \(error.description)")
                return ConfigError.exitCode
            }
        }
        let start = FleetStart.choose(fileConfig, path: options.config) { log($0, $1) }
        let config = start.config
        if config.fleet != nil { log("fleet: site VIPs from \(start.source)") }
        if let available = MemoryBudget.availableBytes() {
            let problems = MemoryBudget.startProblems(config, available: available)
            if !problems.isEmpty {
                log(.error, "config refused:\n" + ConfigError(file: options.config, problems: problems).description)
                return ConfigError.exitCode
            }
        }
        // Causes DPDK would report badly: another process on this prefix, unreadable capture files.
        let prefix = StartupChecks.filePrefix(ealArguments)
        let lock: InstanceLock
        do {
            lock = try InstanceLock(prefix: prefix)
        } catch {
            log(.error, error.description)
            return 1
        }
        defer { lock.release() }
        if let pid = StartupChecks.primaryHolding(prefix: prefix) {
            log(
                .error,
                "DPDK file prefix \"\(prefix)\" is in use by a running DPDK primary process (pid \(pid)); choose another --file-prefix"
            )
            return 1
        }
        let unreadable = StartupChecks.unreadableVdevFiles(ealArguments)
        if !unreadable.isEmpty {
            log(.error, "cannot read the capture given to --vdev:\n" + unreadable.joined(separator: "\n"))
            return 1
        }
        let kernelLinks = StartupChecks.kernelPortInterfaces(ealArguments, afXDP: config.ports.compactMap(\.afXDPInterface))
        for warning in StartupChecks.checksumOffloadWarnings(kernelLinks) { log(.warning, warning) }
        let server: ControlServer
        do {
            server = try ControlServer(path: config.control.socket)
        } catch {
            log(.error, "control socket: \(error.description)")
            return error.isConfigProblem ? ConfigError.exitCode : 1
        }
        defer { server.close() }
        // EAL's and the drivers' lines go through the same logger (and level filter) as ternd's.
        if !EALLog.redirect({ level, line in
            if let why = EALLog.harmlessReason(line), (4...5).contains(level) {  // errors and warnings only
                log(.info, "\(line) (harmless: \(why))")
            } else {
                log(dpdkLevel(level), line)
            }
        }) {
            log(.warning, "cannot redirect DPDK's log: its lines go to stderr as they are")
        }
        do {
            _ = try EAL.initialize(ealArguments)
        } catch {
            log(.error, error.description)
            return 1
        }
        // EAL's cleanup closes every device, and net_tap's close sets its interface down (the
        // kernel then drops its routes): with a persistent TAP attached it is skipped, and the
        // process's exit closes the queues, leaving the interface up with its addresses and routes.
        var keepDevices = false
        defer {
            if !keepDevices { EAL.cleanup() }
            StartupChecks.removeRuntimeDirectory(prefix: prefix)
        }
        // dpdk-dumpcap attaches as a secondary process: only with hugepages and shared config.
        let sharedConfig = !ealArguments.contains { ["--no-huge", "--in-memory", "--no-shconf"].contains($0) }
        if sharedConfig && !EAL.enableCapture() { log(.warning, "rte_pdump_init failed: dpdk-dumpcap cannot capture") }
        let publisher = Publisher(spec: DesiredState(config: config).snapshotSpec, workers: config.dataplane.workers)
        // Flow tables kept across restarts: re-attached when the last ternd left them (same shape, same boot).
        let flowStatePath = config.dataplane.flowState ?? DataplaneConfig.defaultFlowState(prefix: prefix)
        var flowState: FlowStateFile?
        if !flowStatePath.isEmpty {
            do {
                let f = try FlowStateFile(
                    path: flowStatePath, workers: config.dataplane.workers, capacity: config.dataplane.flowTableEntries,
                    monotonicNow: monotonicSeconds())
                log("flow state: \(f.summary)")
                flowState = f
            } catch  where error.onlyWarning {
                log(.warning, "flow state: \(error.description)")
            } catch {
                log(.error, "\(options.config): \(ConfigSchema.flowState.path): \(error.description)")
                return ConfigError.exitCode
            }
        }
        let dataplane: Dataplane
        do {
            dataplane = try Dataplane(
                config: config, configPath: options.config, cell: publisher.cell,
                idleSleepMicroseconds: options.idleSleepMicroseconds, flowState: flowState,
                xdpProgram: config.dataplane.xdpProgram
                    ?? DataplaneConfig.defaultXDPProgram(executable: Installed.executablePath()))
        } catch let error as StartupError {
            log(.error, error.message)
            return error.exitCode
        } catch {
            log(.error, "\(error)")
            return 1
        }
        keepDevices = !dataplane.persistentTAPs.isEmpty
        if sharedConfig, let port = dataplane.ports.first, !EAL.primeCaptureClock(port: port.id, pool: dataplane.pool) {
            log(.warning, "cannot set pcapng's time base: dpdk-dumpcap's timestamps may be wrong")
        }
        for w in config.importWarnings { log("import note: \(w)") }
        if config.dataplane.workers > 1 && !dataplane.rss {
            log("note: the ports offer no RSS; each worker polls its own queue (virtual devices: one rx_pcap per queue)")
        }
        log(
            "started: \(config.summary); ports \(dataplane.ports.map(\.name).joined(separator: ", ")); "
                + dataplane.plan.mbufSummary
                + "; "
                + "RSS \(dataplane.rss ? "on" : "off"); control socket \(config.control.socket)")
        let agent = Agent(
            config: config, configPath: options.config, publisher: publisher, dataplane: dataplane, signals: signals,
            server: server, site: start.site.map { ($0.document, $0.name, start.revision) },
            stopWhenIdleSeconds: options.stopWhenIdleSeconds,
            environment: AgentEnvironment(
                log: { log($0, $1) }, clock: monotonicSeconds, wallClock: wallSeconds,
                availableMemory: { MemoryBudget.availableBytes() }))
        // DPDK telemetry commands (its thread) ask the control thread through the agent's exchange.
        let exchange = agent.exchange
        Telemetry.register(
            [
                ("/tern/stats", "Tern's counters, live. No parameters."),
                ("/tern/vips", "Packets forwarded per VIP. No parameters."),
            ]
        ) { exchange.ask($0) }
        do {
            if let address = try agent.serveMetrics(config.metrics) { log("metrics: GET http://\(address)/metrics") }
        } catch {
            let m = config.metrics!
            log(.error, "\(options.config): \(ConfigSchema.metricsListen.path): cannot listen on \(m.host):\(m.port): \(error)")
            _ = dataplane.stop()
            return ConfigError.exitCode  // the file names a listener that cannot be: fix it, do not restart-loop
        }
        // Ports up, host interfaces made, listeners bound: units ordered after ternd may start.
        SystemdNotify.send("READY=1\nSTATUS=forwarding: \(config.summary)")
        let why = agent.run()
        SystemdNotify.send("STOPPING=1\nSTATUS=\(why): stopping")
        log(why + ": stopping")
        // A replay run that went idle is over: nothing to resume, so its flows are not kept.
        if why.hasPrefix("no packet for"), let flowState {
            flowState.remove()
            log("flow state: \(flowState.path) removed (stopped when idle)")
        }
        return shutdown(dataplane, agent: agent, statsJSON: options.statsJSON)
    }

    /// Stops the data plane and prints the final counters as one JSON line (and to `statsJSON`).
    static func shutdown(_ dataplane: Dataplane, agent: Agent, statsJSON: String?) -> Int32 {
        let inUse = dataplane.stop()
        let report = agent.report(extra: [("mbufs_in_use", UInt64(inUse))])
        let json = report.json
        print(json)
        var status: Int32 = 0
        if let path = statsJSON {
            if let f = fopen(path, "w") {
                fputs(json + "\n", f)
                fclose(f)
            } else {
                log(.error, "cannot write \(path): \(String(cString: strerror(errno)))")
                status = 1
            }
        }
        let polled = report.extra.first { $0.0 == "rx_polled" }?.1 ?? 0
        if polled != report.outcomes.received {
            log(.error, "BUG: rx \(polled) != sum of verdicts \(report.outcomes.received)")
            status = 1
        }
        // A persistent TAP is left open (never stopped: that would set it down), so its RX queue
        // keeps the mbufs it was filled with until the process exits; net_af_xdp keeps its fill
        // rings' mbufs likewise.
        let kept = dataplane.keptMbufs
        if inUse > kept {
            log(.error, "BUG: \(inUse) mbufs still in use after stop")
            status = 1
        } else if inUse > 0 {
            log("\(inUse) mbufs stay in drivers' queues until exit (persistent host interfaces, AF_XDP fill rings)")
        }
        return status
    }
}

extension SignalReader: SignalSource {}
