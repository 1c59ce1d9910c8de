// The control thread's loop. Event sources and what each does:
//   SIGHUP            reload the config file (Reloader); one log line with the outcome
//   SIGTERM, SIGINT   stop: the loop returns and the daemon shuts the data plane down
//   SIGUSR1, SIGUSR2  logged and ignored (they would otherwise kill the daemon); SIGPIPE is ignored
//   idle timer        with --stop-when-idle: stop once no packet arrived for that long
// Later sources (the control socket, health probes, the BGP feed) join here. Nothing in this loop
// blocks for long: a reload's build gives way to a pending stop signal.

#if canImport(Glibc)
import Glibc
#endif

/// Where signals come from (ternd: a signalfd; tests: a script).
public protocol SignalSource {
    /// The next signal, waiting at most `timeoutMilliseconds`; nil if none.
    func next(timeoutMilliseconds: Int32) -> Int32?
    /// Whether a stop signal waits to be read (without reading it).
    var stopPending: Bool { get }
}

public final class ControlLoop {
    let signals: any SignalSource
    let reloader: Reloader
    let log: (String) -> Void
    let clock: () -> Double
    /// Stop after this many seconds without progress (nil: never).
    let stopWhenIdleSeconds: Double?
    /// Packets received so far (sum over workers), to tell when RX went idle.
    let progress: () -> UInt64

    public init(
        signals: any SignalSource, reloader: Reloader, log: @escaping (String) -> Void, clock: @escaping () -> Double,
        stopWhenIdleSeconds: Double? = nil, progress: @escaping () -> UInt64 = { 0 }
    ) {
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
        while true {
            if let signal = signals.next(timeoutMilliseconds: pollMilliseconds) {
                switch signal {
                case SIGHUP:
                    let signals = self.signals
                    log(reloader.reload(shouldStop: { signals.stopPending }).message)
                case SIGTERM, SIGINT:
                    return "signal \(signal)"
                default:
                    log("signal \(signal) ignored")
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
