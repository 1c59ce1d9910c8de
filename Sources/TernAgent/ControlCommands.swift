// What the control socket answers. Commands (the names scripts call; ternctl wraps each):
//   status                      version, uptime, config file and generation, workers, ports, last reload
//   stats                       every counter, live (LiveStats): the final JSON line's keys
//   reload                      re-read the config file; ok, or the error (the running config stays)
//   drain   backend= [vip=]     weight 0 for that backend (of every VIP that has it, or of `vip`)
//   undrain backend= [vip=]     back to the config's weight
//   show-backends [vip=]        per VIP: each backend's weight, state, Maglev slots and share
//   show-vips                   per VIP: backends, slots, encapsulation

import Foundation
import Logging
import TernBalancing
import TernControl
import TernDataplane
import TernWire

public enum TernVersion {
    public static let string = "0.10.0"
}

/// Facts about the running daemon that the agent does not own.
public struct DaemonInfo {
    public var configPath: String
    public var startedAt: Double
    public var workers: Int
    /// Per port: name, link state, DPDK counters (read when asked).
    public var ports: () -> [[String: Any]]
    /// The data plane's live counters.
    public var stats: LiveStats

    public init(configPath: String, startedAt: Double, workers: Int, ports: @escaping () -> [[String: Any]], stats: LiveStats) {
        self.configPath = configPath
        self.startedAt = startedAt
        self.workers = workers
        self.ports = ports
        self.stats = stats
    }
}

public final class ControlCommands {
    let reloader: Reloader
    /// Table fingerprints of the running generation, computed when first asked.
    var fingerprints: (generation: UInt32, values: [String: String])?
    let info: DaemonInfo
    let wallClock: () -> Double
    let shouldStop: () -> Bool
    /// Called with every change's log line (reloads and drains asked over the socket).
    let log: (Logger.Level, String) -> Void

    public init(
        reloader: Reloader, info: DaemonInfo, wallClock: @escaping () -> Double, shouldStop: @escaping () -> Bool,
        log: @escaping (Logger.Level, String) -> Void
    ) {
        self.reloader = reloader
        self.info = info
        self.wallClock = wallClock
        self.shouldStop = shouldStop
        self.log = log
    }

    public func handle(_ request: ControlRequest) -> [String: Any] {
        switch request.command {
        case "status": return status()
        case "stats":
            let json = info.stats.report(extraObjects: [("reloads", [("ok", reloader.succeeded), ("failed", reloader.failed)])]).json
            guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else {
                return ControlReply.error("stats not encodable")
            }
            return ControlReply.ok(object.merging(["time": wallClock()]) { a, _ in a })
        case "reload":
            let result = reloader.reload(shouldStop: shouldStop)
            log(result.ok ? .info : .error, result.message)
            return result.ok ? ControlReply.ok(["message": result.message]) : ControlReply.error(result.message)
        case "drain", "undrain": return setState(request, to: request.command == "drain" ? .draining : .active)
        case "show-backends": return showBackends(vip: request.arguments["vip"])
        case "show-vips": return showVIPs()
        default:
            return ControlReply.error(
                "unknown command \"\(escapedForMessage(request.command))\" (status, stats, reload, drain, undrain, show-backends, show-vips)")
        }
    }

    /// Flat name/value pairs for DPDK telemetry (`/tern/stats`, `/tern/vips`), as "name value" lines.
    public func telemetry(_ command: String) -> [UInt8] {
        var pairs: [(String, UInt64)] = []
        switch command {
        case "/tern/stats":
            let report = info.stats.report()
            pairs = [
                ("rx", report.outcomes.received), ("forwarded", report.outcomes[.forwarded]), ("host", report.outcomes[.host]),
            ]
            pairs += Outcome.replies.map { ("replied_" + $0.0, report.outcomes[$0.1]) }
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

    func status() -> [String: Any] {
        var fields: [String: Any] = [
            "version": TernVersion.string, "uptime_s": Int(wallClock() - info.startedAt), "config": info.configPath,
            "generation": Int(reloader.publisher.generation), "workers": info.workers, "ports": info.ports(),
            "reloads": ["ok": Int(reloader.succeeded), "failed": Int(reloader.failed)],
            "summary": reloader.desired.config.summary, "table_fingerprints": tableFingerprints(),
        ]
        if let last = reloader.last {
            fields["last_reload"] = ["time": last.time, "ok": last.ok, "message": last.message]
        }
        return ControlReply.ok(fields)
    }

    func setState(_ request: ControlRequest, to state: BackendState) -> [String: Any] {
        guard let text = request.arguments["backend"], let address = IPAddress(text) else {
            return ControlReply.error("\(request.command) needs backend=ADDRESS")
        }
        if let vip = request.arguments["vip"], !reloader.desired.config.vips.contains(where: { $0.name == vip }) {
            return ControlReply.error("no VIP \(escapedForMessage(vip)) (VIPs are named like 192.0.2.10:80/tcp)")
        }
        let keys = reloader.desired.backends(address, vip: request.arguments["vip"])
        guard !keys.isEmpty else { return ControlReply.error("no backend \(address)\(request.arguments["vip"].map { " in \($0)" } ?? "")") }
        let result = reloader.setState(keys, to: state)
        log(result.ok ? .info : .error, result.message)
        return result.ok ? ControlReply.ok(["message": result.message]) : ControlReply.error(result.message)
    }

    /// Slots per backend in the running Maglev table of each VIP, by the snapshot's order.
    func backendRows(vip: VIPConfig, index v: Int) -> [[String: Any]] {
        let snapshot = reloader.publisher.cell.current
        let record = snapshot.pointee.vips[v]
        var slots = [Int](repeating: 0, count: record.backendCount)
        let table = snapshot.pointee.tables
        for s in record.tableBase..<(record.tableBase + snapshot.pointee.tableSize) where table[s] != Maglev.emptySlot {
            slots[Int(table[s])] += 1
        }
        let size = Double(snapshot.pointee.tableSize)
        return (0..<record.backendCount).map { i in
            let b = snapshot.pointee.backends[record.firstBackend + i]
            let configured = vip.backends.first { $0.address == b.address }?.weight ?? 0
            let state = reloader.desired.state(of: BackendKey(vip: vip.name, address: b.address))
            return [
                "address": b.address.description, "weight": configured, "effective_weight": b.weight, "state": state.rawValue,
                "slots": slots[i], "share": Double(slots[i]) / size,
            ]
        }
    }

    func showBackends(vip: String?) -> [String: Any] {
        let vips = reloader.desired.config.vips
        if let vip, !vips.contains(where: { $0.name == vip }) { return ControlReply.error("no VIP \(escapedForMessage(vip))") }
        var out: [[String: Any]] = []
        for (i, v) in vips.enumerated() where vip == nil || v.name == vip {
            out.append(["vip": v.name, "backends": backendRows(vip: v, index: i)])
        }
        return ControlReply.ok(["vips": out])
    }

    /// Each running VIP's table fingerprint (`ForwardingSnapshot.fingerprint`), as 16 hex digits.
    public func tableFingerprints() -> [String: String] {
        let generation = reloader.publisher.generation
        if let f = fingerprints, f.generation == generation { return f.values }
        let snapshot = reloader.publisher.cell.current
        var values: [String: String] = [:]
        for v in 0..<snapshot.pointee.vips.count {
            let hex = String(snapshot.pointee.fingerprint(vip: v), radix: 16)
            values[snapshot.pointee.vips[v].name] = String(repeating: "0", count: 16 - hex.count) + hex
        }
        fingerprints = (generation, values)
        return values
    }

    func showVIPs() -> [String: Any] {
        let c = reloader.desired.config
        let fingerprints = tableFingerprints()
        let rows: [[String: Any]] = c.vips.map { v in
            let taking = v.backends.filter { reloader.desired.effectiveWeight($0, of: v) > 0 }.count
            return [
                "vip": v.name, "encap": v.encapsulation == .gue ? "gue" : "ipip", "backends": v.backends.count,
                "backends_taking_new_flows": taking, "table_size": c.tableSize, "fingerprint": fingerprints[v.name] ?? "",
            ]
        }
        return ControlReply.ok(["vips": rows, "generation": Int(reloader.publisher.generation)])
    }
}
