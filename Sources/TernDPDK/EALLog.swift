// DPDK's own log lines (EAL, drivers) delivered to a Swift function, so that ternd writes them
// through its logger like every other line instead of DPDK writing to stderr on its own.

import CDPDK
import Synchronization

public enum EALLog {
    /// DPDK's levels (`RTE_LOG_EMERG` 1 ... `RTE_LOG_DEBUG` 8) and a line without its newline.
    public typealias Sink = @Sendable (_ level: UInt32, _ line: String) -> Void

    struct State {
        var sink: Sink?
        /// Bytes of a line not yet ended (DPDK may write a long line in pieces).
        var pending: [UInt8] = []
    }

    static let state = Mutex(State())

    /// Sends every later DPDK log line to `sink` (call before `EAL.initialize` to catch EAL's own
    /// start-up lines). False when the stream could not be made (DPDK keeps writing to stderr).
    public static func redirect(_ sink: @escaping Sink) -> Bool {
        state.withLock { $0.sink = sink }
        return tern_log_to { level, bytes, length in
            guard let bytes else { return }
            EALLog.receive(level, UnsafeRawBufferPointer(start: bytes, count: length))
        } == 0
    }

    /// Lines DPDK logs as errors or warnings on every start that are not Tern's problem, and why:
    /// such a line is logged at info with the reason, so log alerting does not fire on every start.
    public static let harmless: [(text: String, why: String)] = [
        // net_tap sets up a multiq qdisc and flower rules for rte_flow, which Tern does not use.
        ("multiq qdisc", "net_tap: rte_flow on the host interface, unused by Tern"),
        ("Specified qdisc kind is unknown", "net_tap: rte_flow on the host interface, unused by Tern"),
        ("Disabling rte flow support", "net_tap: rte_flow on the host interface, unused by Tern"),
        // net_tap tells DPDK secondary processes about queue changes; there are none unless a capture runs.
        ("Failed to send start req to secondary", "net_tap: no secondary process to tell"),
        ("No legacy callbacks, legacy socket not created", "telemetry: the legacy socket is not used"),
    ]

    /// The reason a DPDK line is harmless (`harmless`), or nil.
    public static func harmlessReason(_ line: String) -> String? {
        harmless.first { line.contains($0.text) }?.why
    }

    /// Cuts what DPDK wrote into lines; sinks each complete one.
    static func receive(_ level: UInt32, _ bytes: UnsafeRawBufferPointer) {
        let (sink, lines) = state.withLock { s -> (Sink?, [String]) in
            var lines: [String] = []
            for byte in bytes {
                if byte == UInt8(ascii: "\n") {
                    lines.append(String(decoding: s.pending, as: UTF8.self))
                    s.pending.removeAll(keepingCapacity: true)
                } else if s.pending.count < 4096 {
                    s.pending.append(byte)
                }
            }
            return (s.sink, lines)
        }
        for line in lines { sink?(level, line) }
    }
}
