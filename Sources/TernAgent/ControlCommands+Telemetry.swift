// What ternd answers DPDK telemetry (`dpdk-telemetry.py`): `/tern/stats` and `/tern/vips` as
// "name value" lines, which the telemetry callback turns into a dict.

import TernDataplane

extension ControlCommands {
    /// Flat name/value pairs for DPDK telemetry (`/tern/stats`, `/tern/vips`), as "name value" lines.
    public func telemetry(_ command: String) -> [UInt8] {
        var pairs: [(String, UInt64)] = []
        switch command {
        case "/tern/stats":
            let report = info.stats.report()
            pairs = [
                ("rx", report.outcomes.received), ("forwarded", report.outcomes.forwarded),
                ("forwarded_in_fragments", report.outcomes[.forwardedInFragments]), ("host", report.outcomes[.host]),
            ]
            pairs += Outcome.replies.map { ("replied_" + $0.0, report.outcomes[$0.1]) }
            pairs.append(("fragments_held", report.outcomes[.held]))
            pairs += Outcome.dropReasons.map { ("dropped_" + $0.dropReason!, report.outcomes[$0]) }
            pairs += report.extra.filter { $0.0 != "workers" }
            pairs += [
                ("flows_inserted", report.flows.inserted), ("flows_evicted", report.flows.evicted),
                ("workers", UInt64(info.workers)), ("generation", UInt64(reloader.publisher.generation)),
                ("reloads_ok", reloader.succeeded), ("reloads_failed", reloader.failed),
            ]
        case "/tern/vips":
            // One entry per VIP (DPDK allows 256 per reply): packets forwarded so far. DPDK takes
            // only letters, digits, '_' and '/' in names: 192.0.2.10:80/tcp is 192_0_2_10_80/tcp.
            pairs = info.stats.publisher.totals().perVIP.prefix(256).map { name, n in
                (String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "/") ? $0 : "_" }), n)
            }
        default:
            break
        }
        return Array(pairs.map { "\($0.0) \($0.1)\n" }.joined().utf8)
    }
}
