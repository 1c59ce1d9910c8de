// What the control socket answers: each `ControlCommand` (ControlProtocol.swift lists them) runs
// against the agent's types and returns its typed reply.

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
    public var ports: () -> [PortStatus]
    /// The data plane's live counters.
    public var stats: LiveStats
    /// Learned next hops (`NeighborWatcher.status`), for status.
    public var gateways: () -> [GatewayStatus]
    /// A backend's health as its checks see it (nil: not checked).
    public var health: (BackendKey) -> HealthState?
    /// Shutdown drain under way.
    public var lifecycle = Lifecycle()

    /// Whether the node asks for every VIP to be withdrawn: shutting down, or some learned next
    /// hop not known yet (packets toward it would be dropped `no_neighbor`).
    public var withdrawing: Bool { lifecycle.stopping || gateways().contains { $0.mac.isEmpty } }

    public init(
        configPath: String, startedAt: Double, workers: Int, ports: @escaping () -> [PortStatus], stats: LiveStats,
        gateways: @escaping () -> [GatewayStatus] = { [] }, health: @escaping (BackendKey) -> HealthState? = { _ in nil }
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
    /// Packet capture (`ternctl capture`); set by the daemon once its workers exist.
    public var capture: PacketCapture?
    /// The fleet (`[fleet]`): what this node applied from etcd.
    public var fleet: FleetApplier?

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

    public func handle(_ command: ControlCommand) -> ControlResponse {
        switch command {
        case .status: return .status(status())
        case .stats: return stats()
        case .reload:
            let result = reloader.reload(shouldStop: shouldStop)
            log(result.ok ? .info : .error, result.message)
            return result.ok ? .message(MessageReply(result.message)) : .failure(result.message)
        case .drain(let backend, let vip): return setState(backend, vip: vip, to: .draining, command: command)
        case .undrain(let backend, let vip): return setState(backend, vip: vip, to: .active, command: command)
        case .showBackends(let vip): return showBackends(vip: vip)
        case .showVIPs: return .vips(showVIPs())
        case .announcements:
            let wanted = Announcements.wanted(reloader.desired, withdrawAll: info.withdrawing)
            let prefixes = wanted.sorted { $0.key < $1.key }.map { prefix, a in
                PrefixAnnouncement(prefix: prefix, up: a.up, communities: a.attributes.communities, med: a.attributes.med)
            }
            return .announcements(AnnouncementsReply(prefixes: prefixes))
        case .capture(let request):
            guard let capture else { return .failure("this ternd has no data plane to capture") }
            return capture.start(request)
        case .captureStatus: return .capture(capture?.status() ?? PacketCapture.none)
        case .captureStop:
            guard let capture else { return .failure("no capture is running") }
            return capture.stop()
        }
    }

    func stats() -> ControlResponse {
        let json = info.stats.report(extraObjects: [("reloads", [("ok", reloader.succeeded), ("failed", reloader.failed)])]).json
        guard let counters = try? ControlWire.decode([String: JSONValue].self, from: Array(json.utf8)) else {
            return .failure("stats not encodable")
        }
        return .stats(StatsReply(counters: counters, time: wallClock()))
    }

    func status() -> StatusReply {
        let wanted = Announcements.wanted(reloader.desired, withdrawAll: info.withdrawing)
        return StatusReply(
            version: TernVersion.string, uptimeSeconds: Int(wallClock() - info.startedAt), config: info.configPath,
            generation: Int(reloader.publisher.generation), workers: info.workers, ports: info.ports(),
            reloads: ReloadCounts(ok: reloader.succeeded, failed: reloader.failed), summary: reloader.desired.config.summary,
            tableFingerprints: tableFingerprints(), gateways: info.gateways(),
            lastReload: reloader.last.map { LastReload(time: $0.time, ok: $0.ok, message: $0.message) },
            announced: reloader.desired.config.vips.filter { wanted[$0.prefix]?.up == true }.map(\.name),
            fleet: fleet?.state)
    }

    func setState(_ address: IPAddress, vip: String?, to state: BackendState, command: ControlCommand) -> ControlResponse {
        if let vip, !reloader.desired.config.vips.contains(where: { $0.name == vip }) {
            return .failure("no VIP \(escapedForMessage(vip)) (VIPs are named like 192.0.2.10:80/tcp)")
        }
        var keys = reloader.desired.backends(address, vip: vip)
        guard !keys.isEmpty else { return .failure("no backend \(address)\(vip.map { " in \($0)" } ?? "")") }
        if state == .active {
            // Undrain only what a drain here drained: naming VIPs where nothing changes would mislead.
            keys = keys.filter { reloader.desired.overrides[$0] == .draining }
            guard !keys.isEmpty else {
                return .message(
                    MessageReply("\(address) was not drained\(vip.map { " in \($0)" } ?? "") by ternctl drain: nothing changed"))
            }
        }
        let result = reloader.setState(keys, to: state)
        log(result.ok ? .info : .error, result.message)
        return result.ok ? .message(MessageReply(result.message)) : .failure(result.message)
    }
}
