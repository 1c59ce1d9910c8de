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
    /// Control-socket clients dropped, by reason (empty without a control socket).
    let controlDropped: [(String, UInt64)]

    /// The exposition text (format 0.0.4), with the metrics server's counters when it has one.
    public func text(server: MetricsServerFigures?) -> [UInt8] {
        var r = MetricsText()
        func counter(_ name: String, _ help: String, _ labels: [(String, String)], _ value: UInt64) {
            r.counter(name, help, labels, value)
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Double) {
            r.gauge(name, help, labels, value)
        }
        gauge("tern_build_info", "Tern's version.", [("version", TernVersion.string)], 1)
        gauge("tern_start_time_seconds", "When ternd started (Unix time).", [], startedAt)
        for (w, block) in workers.enumerated() {
            let worker = [("worker", String(w))]
            var outcomes = OutcomeCounters()
            for o in Outcome.allCases { outcomes.add(o, block[CounterSlot.outcomes.rawValue + Int(o.rawValue)]) }
            func load(_ slot: CounterSlot) -> UInt64 { block[slot.rawValue] }
            counter("tern_rx_packets_total", "Packets the worker took from its RX queues.", worker, load(CounterSlot.rx))
            counter("tern_forwarded_packets_total", "Packets encapsulated to a backend.", worker, outcomes.forwarded)
            counter(
                "tern_forwarded_in_fragments_packets_total",
                "Packets encapsulated to a backend as outer IPv4 fragments (no DF, too big).",
                worker, outcomes[.forwardedInFragments])
            counter("tern_host_packets_total", "Packets not for a VIP (the host's).", worker, outcomes[.host])
            for (kind, o) in Outcome.replies {
                counter("tern_replied_packets_total", "Packets answered by Tern (ICMP).", worker + [("kind", kind)], outcomes[o])
            }
            counter(
                "tern_fragments_held_total",
                "IP fragments held until their datagram's first fragment passed (then counted by their outcome).",
                worker, outcomes[.held])
            for o in Outcome.dropReasons {
                counter(
                    "tern_dropped_packets_total", "Packets dropped, by reason.", worker + [("reason", o.dropReason!)], outcomes[o]
                )
            }
            counter("tern_tx_packets_total", "Frames transmitted.", worker, load(CounterSlot.tx))
            counter(
                "tern_tx_failed_packets_total", "Frames the TX queue refused (freed).", worker, load(CounterSlot.txFailed))
            counter(
                "tern_flows_inserted_total", "Flows inserted into the worker's flow table.", worker,
                load(CounterSlot.flowsInserted))
            counter("tern_flows_evicted_total", "Flows evicted from a full bucket.", worker, load(CounterSlot.flowsEvicted))
            for f in CounterSlot.features { counter("tern_\(f.name)_total", f.help, worker, load(f.slot)) }
        }
        let hostHelp = [
            "host_tx": "Frames handed to the kernel's host interfaces.", "host_rx": "Frames from the host interfaces sent out.",
            "host_dropped": "Host-bound frames lost: a worker's ring to the host path full, or the TAP refused them.",
            "host_rx_dropped": "Frames from the host interfaces lost on the way to the transmitting worker (ring full).",
        ]
        for (name, n) in host {
            counter("tern_\(name)_packets_total", hostHelp[name] ?? name, [], n)
        }
        for v in totals.vips {
            counter("tern_vip_forwarded_packets_total", "Packets forwarded for a VIP.", [("vip", v.name)], v.packets)
            counter(
                "tern_vip_new_flows_total", "Flows Maglev placed for a VIP (flow-table misses).", [("vip", v.name)], v.newFlows)
        }
        for case let e? in totals.entries {
            let labels = [("vip", e.vip), ("backend", e.address.description)]
            counter("tern_backend_forwarded_packets_total", "Packets forwarded to a VIP's backend.", labels, e.packets)
            counter("tern_backend_new_flows_total", "Flows Maglev placed on a VIP's backend.", labels, e.newFlows)
        }
        let wanted = Announcements.wanted(desired, withdrawAll: withdrawing)
        for v in desired.config.vips {
            gauge(
                "tern_vip_announced",
                "1 while ternd asks the BGP feed to announce the VIP's prefix (enough live backends, not shutting down).",
                [("vip", v.name)], wanted[v.prefix]?.up == true ? 1 : 0)
        }
        for (vip, fingerprint) in fingerprints.sorted(by: { $0.key < $1.key }) {
            gauge(
                "tern_vip_table_info", "The running Maglev table's fingerprint: equal on every node means equal routing.",
                [("vip", vip), ("fingerprint", fingerprint)], 1)
        }
        for v in desired.config.vips {
            for b in v.backends where b.health != nil {
                let labels = [("vip", v.name), ("backend", b.address.description)]
                let h = health[BackendKey(vip: v.name, address: b.address)] ?? HealthState()
                gauge("tern_backend_up", "1 while the backend passes its health checks.", labels, h.up ? 1 : 0)
                counter(
                    "tern_backend_health_transitions_total", "Health changes (up to down, down to up).", labels, h.transitions)
            }
        }
        for v in desired.config.vips {
            for b in v.backends {
                gauge(
                    "tern_backend_weight", "The weight a backend has now (0 while drained).",
                    [("vip", v.name), ("backend", b.address.description)], Double(desired.effectiveWeight(b, of: v)))
            }
        }
        for p in ports {
            let port = [("port", p.name)]
            gauge("tern_port_link_up", "1 when the port's link is up.", port, p.linkUp ? 1 : 0)
            for (key, name, help) in [
                ("ipackets", "tern_port_rx_packets_total", "Packets the device received."),
                ("opackets", "tern_port_tx_packets_total", "Packets the device sent."),
                ("imissed", "tern_port_rx_missed_packets_total", "Packets the device dropped: RX queues full."),
                ("rx_nombuf", "tern_port_rx_nombuf_total", "RX mbuf allocation failures."),
                ("ierrors", "tern_port_rx_errors_total", "Erroneous received packets."),
                ("oerrors", "tern_port_tx_errors_total", "Failed transmissions."),
            ] {
                counter(name, help, port, p.stats[key] ?? 0)
            }
            // AF_XDP ports: what Tern's XDP program did with each frame (its counters, `xdp_*`).
            for key in p.stats.keys.filter({ $0.hasPrefix("xdp_") }).sorted() {
                counter(
                    "tern_port_xdp_packets_total",
                    "Frames Tern's XDP program saw on an AF_XDP port: redirected (to ternd), passed (to the kernel), "
                        + "no_socket (for a VIP, passed: no ternd socket on the queue).",
                    port + [("verdict", String(key.dropFirst(4)))], p.stats[key]!)
            }
        }
        gauge(
            "tern_config_generation", "Generation of the running forwarding snapshot.", [], Double(generation))
        counter("tern_config_reloads_total", "Reloads and runtime changes, by result.", [("result", "ok")], reloadsSucceeded)
        counter("tern_config_reloads_total", "Reloads and runtime changes, by result.", [("result", "failed")], reloadsFailed)
        gauge(
            "tern_config_last_reload_successful", "1 when the last reload succeeded (or none was tried).", [],
            lastReloadOK.map { $0 ? 1 : 0 } ?? 1)
        gauge(
            "tern_config_last_reload_success_timestamp_seconds", "When the running config was loaded (Unix time).", [],
            lastSuccessTime ?? startedAt)
        for (reason, n) in controlDropped {
            counter(
                "tern_control_clients_dropped_total",
                "Control-socket clients dropped: no request in time, a reply not taken in time, a request too long.",
                [("reason", reason)], n)
        }
        if let server {
            gauge("tern_metrics_connections", "Open connections to [metrics] listen.", [], Double(server.open))
            for (reason, n) in [("limit", server.refused), ("timeout", server.timedOut), ("malformed", server.malformed)] {
                counter(
                    "tern_metrics_connections_closed_total",
                    "Metrics connections ternd closed: over the connection limit, idle or slow, or a malformed request.",
                    [("reason", reason)], n)
            }
        }
        return r.bytes
    }
}
