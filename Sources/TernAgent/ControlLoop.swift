// The control thread's loop. Event sources and what each does:
//   SIGHUP            reload the config file (Reloader); one log line with the outcome
//   SIGTERM, SIGINT   stop: the loop returns and the daemon shuts the data plane down; with
//                     [control] shutdown_drain_s, first report every VIP down (a BGP feed
//                     withdraws them) and keep forwarding that long (a second signal stops at once)
//   other signals     logged and ignored: every one whose default action would end the daemon
//                     (SIGUSR1/2, SIGQUIT, SIGALRM, SIGXCPU, SIGXFSZ, real-time ones...) but the
//                     synchronous faults and SIGKILL/SIGSTOP; SIGPIPE is ignored silently
//   control socket    one request per connection (ControlServer, ControlCommands): status,
//                     reload, drain, undrain, show-backends, show-vips
//   exchange          questions from other threads, answered here: a Prometheus scrape
//                     (MetricsServer's thread), a DPDK telemetry command (its thread)
//   idle timer        with --stop-when-idle: stop once no packet arrived for that long
//   periodic tasks    every so many seconds: the neighbour watcher (learned gateways)
// Later sources (health probes, the BGP feed) join here. One poll() waits on all of them; nothing
// blocks for long: a silent client is dropped after a timeout, a reload's build gives way to a
// pending stop signal.

import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Whether ternd is on its way out (shutdown drain): VIPs are then reported down.
public final class Lifecycle: @unchecked Sendable {
    public var stopping = false
    public init() {}
}

/// Where signals come from (ternd: a signalfd; tests: a script).
public protocol SignalSource {
    /// A descriptor that becomes readable when a signal arrives (-1: none, poll `next` instead).
    var descriptor: Int32 { get }
    /// The next signal, waiting at most `timeoutMilliseconds`; nil if none.
    func next(timeoutMilliseconds: Int32) -> Int32?
    /// Whether a stop signal waits to be read (without reading it).
    var stopPending: Bool { get }
}

public final class ControlLoop {
    let signals: any SignalSource
    let reloader: Reloader
    let log: (Logger.Level, String) -> Void
    let clock: () -> Double
    /// Stop after this many seconds without progress (nil: never).
    let stopWhenIdleSeconds: Double?
    /// Packets received so far (sum over workers), to tell when RX went idle.
    let progress: () -> UInt64
    let server: ControlServer?
    let commands: ControlCommands?
    let exchange: ControlExchange?
    let answer: (String) -> any Sendable
    /// Work to do every `interval` seconds (first at the start).
    let periodic: [(interval: Double, action: () -> Void)]
    let lifecycle: Lifecycle

    public init(
        signals: any SignalSource, reloader: Reloader, log: @escaping (Logger.Level, String) -> Void,
        clock: @escaping () -> Double,
        stopWhenIdleSeconds: Double? = nil, progress: @escaping () -> UInt64 = { 0 }, server: ControlServer? = nil,
        commands: ControlCommands? = nil, exchange: ControlExchange? = nil,
        answer: @escaping (String) -> any Sendable = { _ in [UInt8]() },
        periodic: [(interval: Double, action: () -> Void)] = [], lifecycle: Lifecycle = Lifecycle()
    ) {
        self.periodic = periodic
        self.lifecycle = lifecycle
        self.exchange = exchange
        self.answer = answer
        self.server = server
        self.commands = commands
        self.signals = signals
        self.reloader = reloader
        self.log = log
        self.clock = clock
        self.stopWhenIdleSeconds = stopWhenIdleSeconds
        self.progress = progress
    }

    /// Runs until a stop signal or the idle timer; returns why it stopped.
    public func run(pollMilliseconds: Int32 = 50) -> String {
        var lastProgress: UInt64 = 0
        var lastChange = clock()
        var due = periodic.map { _ in lastChange }
        var drainUntil: Double?
        while true {
            if let until = drainUntil, clock() >= until { return "shutdown drain over" }
            for (i, task) in periodic.enumerated() where clock() >= due[i] {
                task.action()
                due[i] = clock() + task.interval
            }
            var fds =
                [signals.descriptor, exchange?.descriptor ?? -1].filter { $0 >= 0 }.map {
                    pollfd(fd: $0, events: Int16(POLLIN), revents: 0)
                } + (server?.pollRequests ?? [])
            _ = poll(&fds, nfds_t(fds.count), pollMilliseconds)
            if let server, let commands { server.service(now: clock(), handle: commands.handle) }
            exchange?.serve(answer)
            if let signal = signals.next(timeoutMilliseconds: 0) {
                switch signal {
                case SIGHUP:
                    let signals = self.signals
                    let result = reloader.reload(shouldStop: { signals.stopPending })
                    log(result.ok ? .info : .error, result.message)
                case SIGTERM, SIGINT:
                    let drain = Double(reloader.desired.config.control.shutdownDrainSeconds)
                    if drain == 0 || lifecycle.stopping { return "signal \(signal)" }
                    lifecycle.stopping = true
                    drainUntil = clock() + drain
                    log(.notice, "signal \(signal): VIPs reported down for withdrawal; forwarding for \(Int(drain)) s more")
                default:
                    log(.warning, "signal \(signal) ignored")
                }
            }
            if let idle = stopWhenIdleSeconds {
                let p = progress()
                let now = clock()
                if p != lastProgress {
                    lastProgress = p
                    lastChange = now
                } else if now - lastChange >= idle {
                    return "no packet for \(idle) s"
                }
            }
        }
    }
}
