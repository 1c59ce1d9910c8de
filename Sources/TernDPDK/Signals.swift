// Signals for the control thread: blocked before EAL starts its threads (they inherit the mask)
// and read synchronously through a signalfd, so no Swift code runs in a signal handler.

import CDPDK

public struct SignalReader: Sendable {
    /// The signalfd: readable when a signal waits.
    public let descriptor: Int32

    /// Blocks every signal that would end the process (all but the synchronous faults and
    /// SIGKILL/SIGSTOP: SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1/2, SIGALRM, SIGVTALRM, SIGPROF,
    /// SIGIO, SIGPWR, SIGXCPU, SIGXFSZ, SIGSTKFLT, the real-time ones) in this thread and the
    /// threads it creates later, opens a signalfd for them (`pthread_sigmask`, `signalfd`) and
    /// ignores SIGPIPE. Call before `EAL.initialize`.
    public init?() {
        let fd = tern_block_signals_fd()
        guard fd >= 0 else { return nil }
        descriptor = fd
    }

    /// The next signal number, waiting at most `timeoutMilliseconds` (`poll`, `read`); nil if none.
    public func next(timeoutMilliseconds: Int32) -> Int32? {
        let s = tern_read_signal(descriptor, timeoutMilliseconds)
        return s > 0 ? s : nil
    }

    /// Whether SIGTERM or SIGINT waits to be read (`sigpending`): long work (a reload's build)
    /// asks this to give way to a stop. The signal stays pending for `next`.
    public var stopPending: Bool { tern_stop_signal_pending() != 0 }
}
