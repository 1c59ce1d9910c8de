// What the control socket answers. Commands (the names scripts call; ternctl wraps each):
//   status                      version, uptime, config file and generation, workers, ports, last reload
//   stats                       every counter, live (LiveStats): the final JSON line's keys
//   reload                      re-read the config file; ok, or the error (the running config stays)
//   drain   backend= [vip=]     weight 0 for that backend (of every VIP that has it, or of `vip`)
//   undrain backend= [vip=]     back to the config's weight
//   show-backends [vip=]        per VIP: each backend's weight, state, Maglev slots and share, packets, new flows
//   announcements               each VIP prefix and whether this node should announce it (BGP feed)
//   show-vips                   per VIP: backends, table size and fingerprint, encapsulation, packets, new flows

import Foundation
import Logging
import TernBalancing
import TernConfig
import TernDataplane
import TernTelemetry
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
    /// Learned next hops (`NeighborWatcher.status`), for status.
    public var gateways: () -> [[String: Any]]
    /// A backend's health as its checks see it (nil: not checked).
    public var health: (BackendKey) -> HealthState?
    /// Shutdown drain under way.
    public var lifecycle = Lifecycle()

    public init(
        configPath: String, startedAt: Double, workers: Int, ports: @escaping () -> [[String: Any]], stats: LiveStats,
        gateways: @escaping () -> [[String: Any]] = { [] }, health: @escaping (BackendKey) -> HealthState? = { _ in nil }
    ) {
        self.health = health
        self.configPath = configPath
        self.startedAt = startedAt
        self.workers = workers
        self.ports = ports
        self.stats = stats
        self.gateways = gateways
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
            let json = info.stats.report(extraObjects: [("reloads", [("ok", reloader.succeeded), ("failed", reloader.failed)])])
                .json
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
        case "announcements":
            let wanted = Announcements.wanted(reloader.desired, stopping: info.lifecycle.stopping)
            let prefixes: [[String: Any]] = wanted.sorted { $0.key < $1.key }.map { prefix, a in
                var p: [String: Any] = ["prefix": prefix, "up": a.up, "communities": a.attributes.communities]
                if let med = a.attributes.med { p["med"] = med }
                return p
            }
            return ControlReply.ok(["prefixes": prefixes])
        default:
            return ControlReply.error(
                "unknown command \"\(escapedForMessage(request.command))\" (status, stats, reload, drain, undrain, show-backends, show-vips, announcements)"
            )
        }
    }

    func status() -> [String: Any] {
        var fields: [String: Any] = [
            "version": TernVersion.string, "uptime_s": Int(wallClock() - info.startedAt), "config": info.configPath,
            "generation": Int(reloader.publisher.generation), "workers": info.workers, "ports": info.ports(),
            "reloads": ["ok": Int(reloader.succeeded), "failed": Int(reloader.failed)],
            "summary": reloader.desired.config.summary, "table_fingerprints": tableFingerprints(), "gateways": info.gateways(),
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
        guard !keys.isEmpty else {
            return ControlReply.error("no backend \(address)\(request.arguments["vip"].map { " in \($0)" } ?? "")")
        }
        let result = reloader.setState(keys, to: state)
        log(result.ok ? .info : .error, result.message)
        return result.ok ? ControlReply.ok(["message": result.message]) : ControlReply.error(result.message)
    }
}
