// Prometheus text exposition of everything ternd counts (MetricsText writes the format). A scrape
// costs the control thread only `sample()`: a copy of the figures (counters, totals, the desired
// state, health, ports; about 1 ms at 10,000 backends), taken there because only that thread may
// read snapshots. The text is written from the copy on the asking thread (`MetricsSample.text`),
// so a large exposition never holds reloads, health checks or the control socket.

import TernBalancing
import TernConfig
import TernDataplane
import TernMetrics
import TernTelemetry

public struct MetricsRenderer {
    let stats: LiveStats
    let reloader: Reloader
    let info: DaemonInfo
    let commands: ControlCommands
    let server: ControlServer?

    public init(stats: LiveStats, reloader: Reloader, info: DaemonInfo, commands: ControlCommands, server: ControlServer? = nil) {
        self.server = server
        self.stats = stats
        self.reloader = reloader
        self.info = info
        self.commands = commands
    }

    /// On the control thread: everything a scrape shows, copied.
    public func sample() -> MetricsSample {
        let desired = reloader.desired
        var health: [BackendKey: HealthState] = [:]
        for v in desired.config.vips {
            for b in v.backends where b.health != nil {
                let key = BackendKey(vip: v.name, address: b.address)
                health[key] = info.health(key) ?? HealthState()
            }
        }
        return MetricsSample(
            startedAt: info.startedAt,
            workers: stats.blocks.map { block in (0..<CounterSlot.count).map { block.slots.load($0) } },
            host: stats.hostCounters, totals: stats.publisher.totals(), fingerprints: commands.tableFingerprints(),
            desired: desired, health: health, ports: info.ports(), generation: reloader.publisher.generation,
            reloadsSucceeded: reloader.succeeded, reloadsFailed: reloader.failed, lastReloadOK: reloader.last?.ok,
            lastSuccessTime: reloader.lastSuccessTime, withdrawing: info.withdrawing,
            fleet: commands.fleet?.state,
            controlDropped: server.map { d in
                [("silent", d.dropped.silent), ("slow_reader", d.dropped.slowReader), ("oversized", d.dropped.oversized)]
            } ?? [])
    }
}

/// The metrics server's own counters (connections it refused or closed).
public struct MetricsServerFigures: Sendable {
    var open: Int
    var refused: UInt64
    var timedOut: UInt64
    var malformed: UInt64
}

/// A scrape's figures, copied on the control thread; `text` may be written on any thread.
public struct MetricsSample: Sendable {
    let startedAt: Double
    /// Each worker's counter block, by `CounterSlot` raw value.
    let workers: [[UInt64]]
    let host: [(String, UInt64)]
    let totals: PacketTotals
    let fingerprints: [String: String]
    let desired: DesiredState
    /// Every health-checked backend's state.
    let health: [BackendKey: HealthState]
    let ports: [PortStatus]
    let generation: UInt32
    let reloadsSucceeded: UInt64
    let reloadsFailed: UInt64
    let lastReloadOK: Bool?
    let lastSuccessTime: Double?
    /// Shutdown drain under way (every VIP withdrawn).
    /// Every VIP withdrawn: shutting down, or a learned next hop unknown.
    let withdrawing: Bool
    /// With `[fleet]`: what this node runs from etcd.
    let fleet: FleetState?
    /// Control-socket clients dropped, by reason (empty without a control socket).
    let controlDropped: [(String, UInt64)]

    /// The exposition text (format 0.0.4), with the metrics server's counters when it has one.
    /// Families and labels are `MetricsCatalog`'s.
    public func text(server: MetricsServerFigures?) -> [UInt8] {
        typealias M = MetricsCatalog
        var r = MetricsText()
        r.add(M.buildInfo, [TernVersion.string], 1.0)
        r.add(M.startTime, [], startedAt)
        for (w, block) in workers.enumerated() {
            let worker = [String(w)]
            var outcomes = OutcomeCounters()
            for o in Outcome.allCases { outcomes.add(o, block[CounterSlot.outcomes.rawValue + Int(o.rawValue)]) }
            func load(_ slot: CounterSlot) -> UInt64 { block[slot.rawValue] }
            r.add(M.rx, worker, load(.rx))
            r.add(M.forwarded, worker, outcomes.forwarded)
            r.add(M.forwardedInFragments, worker, outcomes[.forwardedInFragments])
            r.add(M.host, worker, outcomes[.host])
            for (kind, o) in Outcome.replies { r.add(M.replied, worker + [kind], outcomes[o]) }
            r.add(M.held, worker, outcomes[.held])
            for o in Outcome.dropReasons { r.add(M.dropped, worker + [o.dropReason!], outcomes[o]) }
            r.add(M.tx, worker, load(.tx))
            r.add(M.txFailed, worker, load(.txFailed))
            r.add(M.flowsInserted, worker, load(.flowsInserted))
            r.add(M.flowsEvicted, worker, load(.flowsEvicted))
            r.add(M.flowsExpired, worker, load(.flowsExpired))
            r.add(M.flowTableEntries, worker, Double(load(.flowTableLive)))
            for (f, family) in zip(CounterSlot.features, M.features) { r.add(family, worker, load(f.slot)) }
        }
        r.add(M.flowTableCapacity, [], Double(FlowTable.roundedCapacity(desired.config.dataplane.flowTableEntries)))
        let hostFigures = Dictionary(host, uniquingKeysWith: +)
        for (stat, family) in M.hostPath { if let n = hostFigures[stat] { r.add(family, [], n) } }
        for v in totals.vips {
            let labels = M.vipLabels(v.name)
            r.add(M.vipPackets, labels, v.packets)
            r.add(M.vipBytes, labels, v.bytes)
            r.add(M.vipNewFlows, labels, v.newFlows)
        }
        for case let e? in totals.entries {
            let labels = M.vipLabels(e.vip) + [e.address.description]
            r.add(M.backendPackets, labels, e.packets)
            r.add(M.backendBytes, labels, e.bytes)
            r.add(M.backendNewFlows, labels, e.newFlows)
        }
        let wanted = Announcements.wanted(desired, withdrawAll: withdrawing)
        for v in desired.config.vips {
            r.add(M.vipAnnounced, M.vipLabels(v.name), wanted[v.prefix]?.up == true ? 1.0 : 0.0)
        }
        for (vip, fingerprint) in fingerprints.sorted(by: { $0.key < $1.key }) {
            r.add(M.vipTable, M.vipLabels(vip) + [fingerprint], 1.0)
        }
        for v in desired.config.vips {
            for b in v.backends where b.health != nil {
                let labels = M.vipLabels(v.name) + [b.address.description]
                let h = health[BackendKey(vip: v.name, address: b.address)] ?? HealthState()
                r.add(M.backendUp, labels, h.up ? 1.0 : 0.0)
                r.add(M.backendTransitions, labels, h.transitions)
            }
        }
        for v in desired.config.vips {
            for b in v.backends {
                r.add(M.backendWeight, M.vipLabels(v.name) + [b.address.description], Double(desired.effectiveWeight(b, of: v)))
            }
        }
        for p in ports {
            r.add(M.portLinkUp, [p.name], p.linkUp ? 1.0 : 0.0)
            for (stat, family) in M.portStats { r.add(family, [p.name], p.stats[stat] ?? 0) }
            // AF_XDP ports: what Tern's XDP program did with each frame (its counters, `xdp_*`).
            for key in p.stats.keys.filter({ $0.hasPrefix("xdp_") }).sorted() {
                r.add(M.portXDP, [p.name, String(key.dropFirst(4))], p.stats[key]!)
            }
        }
        r.add(M.generation, [], Double(generation))
        r.add(M.reloads, ["ok"], reloadsSucceeded)
        r.add(M.reloads, ["failed"], reloadsFailed)
        r.add(M.lastReloadOK, [], lastReloadOK.map { $0 ? 1.0 : 0.0 } ?? 1.0)
        r.add(M.lastReloadTime, [], lastSuccessTime ?? startedAt)
        for (reason, n) in controlDropped { r.add(M.controlDropped, [reason], n) }
        if let server {
            r.add(M.metricsConnections, [], Double(server.open))
            for (reason, n) in [("limit", server.refused), ("timeout", server.timedOut), ("malformed", server.malformed)] {
                r.add(M.metricsClosed, [reason], n)
            }
        }
        if let fleet {
            r.add(M.fleetRevision, [], Double(fleet.revision))
            r.add(M.fleetReachable, [], fleet.reachable ? 1.0 : 0.0)
        }
        return r.bytes
    }
}
