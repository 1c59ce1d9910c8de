// The control plane of a running node, wired: desired state and reloads (Reloader), learned next
// hops (NeighborWatcher), health checks (HealthProber), the control socket's commands, metrics and
// telemetry answers (ControlExchange, MetricsRenderer, MetricsServer), and the control loop that
// drives them all. It sees the data plane only through `DataplaneView`, so it is unit-tested with a
// fake (AgentTests) and ternd only starts the DPDK side and hands it over.

import Logging
import TernBalancing
import TernConfig
import TernDataplane
import TernMetrics
import TernTelemetry

/// What the control plane sees of the running data plane: ternd's DPDK ports and workers, or a
/// test's fake.
public protocol DataplaneView: AnyObject {
    /// Each port's name, link and device counters, read when asked.
    var portStatus: [PortStatus] { get }
    /// Each worker's live counters.
    var counterBlocks: [CounterBlock] { get }
    /// The host-path thread's counters (nil without host interfaces).
    var hostCounters: CounterBlock? { get }
    /// Packets received so far over all workers (the idle timer's progress).
    var progress: UInt64 { get }
    /// Learned next hops (`[[port]] gateway`), by port index: the cells workers read.
    var gateways: [Int: GatewayCell] { get }
    /// A reload's config is running (the snapshot is published): device-side state follows it
    /// (the XDP programs' VIP maps).
    func configApplied(_ config: TernConfig)
    /// Where the workers look for a running capture (nil: the data plane cannot capture).
    var packetTap: PacketTap? { get }
}

extension DataplaneView {
    public var packetTap: PacketTap? { nil }
}

extension DataplaneView {
    public func configApplied(_ config: TernConfig) {}
}

/// The clocks and outside facts the agent runs on (ternd: the system's; tests: their own).
public struct AgentEnvironment {
    public var log: (Logger.Level, String) -> Void
    /// Monotonic seconds (timeouts, periods) and wall-clock seconds (uptime, reload times).
    public var clock: () -> Double
    public var wallClock: () -> Double
    /// MemAvailable, for reloads that would not fit (nil: unknown).
    public var availableMemory: () -> Int?

    public init(
        log: @escaping (Logger.Level, String) -> Void, clock: @escaping () -> Double, wallClock: @escaping () -> Double,
        availableMemory: @escaping () -> Int?
    ) {
        self.log = log
        self.clock = clock
        self.wallClock = wallClock
        self.availableMemory = availableMemory
    }
}

public final class Agent {
    public let reloader: Reloader
    public let commands: ControlCommands
    public let stats: LiveStats
    /// Other threads (a Prometheus scrape, DPDK telemetry) ask the control thread here.
    public let exchange = ControlExchange()
    let watcher: NeighborWatcher
    let prober: HealthProber
    let renderer: MetricsRenderer
    let loop: ControlLoop
    var metricsServer: MetricsServer?
    /// `ternctl capture` (nil when the data plane has no tap).
    let capture: PacketCapture?
    /// The fleet thread (nil without `[fleet]`).
    let fleet: FleetFollower?

    /// `config` is running (`publisher` holds its snapshot) on `dataplane`; `server` is the control
    /// socket (nil: none), `signals` where SIGHUP and SIGTERM come from.
    public init(
        config: TernConfig, configPath: String, publisher: Publisher, dataplane: any DataplaneView, signals: any SignalSource,
        server: ControlServer?, site: (document: [UInt8], name: String, revision: Int64)? = nil,
        stopWhenIdleSeconds: Double? = nil,
        environment: AgentEnvironment, neighbors: @escaping () -> Result<[Netlink.Neighbor], NetlinkError> = Netlink.neighbors
    ) {
        let log = environment.log
        let reloader = Reloader(
            configPath: configPath, desired: DesiredState(config: config), publisher: publisher,
            availableMemory: environment.availableMemory, clock: environment.clock, wallClock: environment.wallClock)
        reloader.site = site.map { ($0.document, $0.name) }
        self.reloader = reloader
        // Learned next hops: the kernel's neighbour table on each host interface, twice a second.
        watcher = NeighborWatcher(
            targets: dataplane.gateways.sorted { $0.key < $1.key }.compactMap { i, cell in
                guard config.ports.indices.contains(i), let gateway = config.ports[i].gateway,
                    let interface = config.ports[i].kernelInterface
                else { return nil }  // a port that learns no next hop has no cell in ternd
                return NeighborWatcher.Target(port: i, gateway: gateway, interface: interface, cell: cell)
            }, log: log, neighbors: neighbors)
        // Health checks from the host's stack, on this thread; verdicts publish a new snapshot.
        let prober = HealthProber { changes in
            // A VIP whose verdicts the fleet agrees on (`quorum = "fleet"`): this node's verdict is
            // only reported (FleetApplier publishes it); the quorum changes the table.
            let quorum = Set(reloader.desired.config.vips.filter(\.fleetHealthQuorum).map(\.name))
            let (agreed, own) = (changes.filter { quorum.contains($0.key.vip) }, changes.filter { !quorum.contains($0.key.vip) })
            for c in agreed {
                log(
                    c.up ? .info : .warning,
                    "health: \(c.key) is \(c.up ? "up" : "DOWN") here (\(c.detail)); the fleet's quorum decides")
            }
            guard !own.isEmpty else { return }
            // Published first: once the line is out, the data plane already routes by it.
            let result = reloader.setHealth(own.map { ($0.key, $0.up) })
            for c in own { log(c.up ? .info : .warning, "health: \(c.key) is \(c.up ? "up" : "DOWN") (\(c.detail))") }
            log(result.ok ? .info : .error, result.message)
        }
        self.prober = prober
        prober.configure(config)
        reloader.didReload = { [weak dataplane] in
            prober.configure($0)
            dataplane?.configApplied($0)
        }
        stats = LiveStats(blocks: dataplane.counterBlocks, publisher: publisher, host: dataplane.hostCounters)
        let lifecycle = Lifecycle()
        let watcher = watcher
        var info = DaemonInfo(
            configPath: configPath, startedAt: environment.wallClock(), workers: config.dataplane.workers,
            ports: { dataplane.portStatus }, stats: stats, gateways: { watcher.status },
            health: { prober.states[$0] })
        info.lifecycle = lifecycle
        commands = ControlCommands(
            reloader: reloader, info: info, wallClock: environment.wallClock, shouldStop: { signals.stopPending }, log: log)
        let capture = dataplane.packetTap.map { tap in
            PacketCapture(
                tap: tap, cell: publisher.cell, workers: config.dataplane.workers, ports: config.ports.count,
                clock: environment.clock, log: log)
        }
        commands.capture = capture
        self.capture = capture
        // The fleet: etcd's site document and drains applied here; this node's report written there.
        if let f = config.fleet, let client = try? EtcdClient(f) {
            let applier = FleetApplier(
                config: f, reloader: reloader, commands: commands, log: log, wallClock: environment.wallClock,
                startedWith: site?.revision ?? 0)
            commands.fleet = applier
            fleet = FleetFollower(config: f, node: FleetStart.nodeName(f), applier: applier, exchange: exchange, client: client)
        } else {
            fleet = nil
        }
        renderer = MetricsRenderer(stats: stats, reloader: reloader, info: info, commands: commands, server: server)
        let (commands, renderer, clock) = (commands, renderer, environment.clock)
        let fleetNode = config.fleet.map(FleetStart.nodeName) ?? ""
        loop = ControlLoop(
            signals: signals, reloader: reloader, log: log, clock: clock, stopWhenIdleSeconds: stopWhenIdleSeconds,
            progress: { dataplane.progress }, server: server, commands: commands, exchange: exchange,
            answer: { question -> any Sendable in
                switch question {
                case "metrics": renderer.sample()
                case "fleet-sync": commands.fleet?.sync(node: fleetNode) ?? [UInt8]()
                default: commands.telemetry(question)
                }
            },
            periodic: (watcher.targets.isEmpty ? [] : [(0.5, watcher.poll)]) + [(0, { prober.step(now: clock()) })]
                + (capture.map { [(0.02, $0.tick)] } ?? []),
            lifecycle: lifecycle)
    }

    /// Serves GET /metrics on `[metrics] listen` (nothing when unset); returns the address.
    public func serveMetrics(_ config: MetricsConfig?) throws -> String? {
        guard let m = config else { return nil }
        let server = try MetricsServer(host: m.host, port: m.port, exchange: exchange)
        metricsServer = server
        return server.address
    }

    /// Runs the control loop until a stop signal or the idle timer; returns why it stopped.
    public func run(pollMilliseconds: Int32 = 50) -> String {
        fleet?.start()
        defer {
            metricsServer?.close()
            metricsServer = nil
            capture?.close()
            fleet?.stopAndWithdraw()
        }
        return loop.run(pollMilliseconds: pollMilliseconds)
    }

    /// The final report: every counter, and the reloads.
    public func report(extra: [(String, UInt64)] = []) -> TrafficReport {
        stats.report(extra: extra, extraObjects: [("reloads", [("ok", reloader.succeeded), ("failed", reloader.failed)])])
    }
}
