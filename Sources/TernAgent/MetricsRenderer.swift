// Prometheus text exposition of everything ternd counts, built with swift-prometheus from a fresh
// registry per scrape (the values are Tern's own counters; the library owns names, labels,
// escaping and the format). Runs on the control thread: it reads snapshots, which only that
// thread may touch.

import Prometheus
import TernConfig
import TernDataplane
import TernMetrics

public struct MetricsRenderer {
    let stats: LiveStats
    let reloader: Reloader
    let info: DaemonInfo
    let commands: ControlCommands

    public init(stats: LiveStats, reloader: Reloader, info: DaemonInfo, commands: ControlCommands) {
        self.stats = stats
        self.reloader = reloader
        self.info = info
        self.commands = commands
    }

    /// The exposition text (format 0.0.4).
    public func render() -> [UInt8] {
        let r = PrometheusCollectorRegistry()
        /// `tern_rx_packets_total`: namespace tern, name rx_packets, unit total.
        func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
            let body = name.dropFirst("tern_".count)
            let cut = body.lastIndex(of: "_")!
            return MetricNameDescriptor(
                namespace: "tern", metricName: String(body[..<cut]), unitName: String(body[body.index(after: cut)...]),
                helpText: help)
        }
        func counter(_ name: String, _ help: String, _ labels: [(String, String)], _ value: UInt64) {
            r.makeCounter(descriptor: descriptor(name, help), labels: labels).increment(by: Int64(truncatingIfNeeded: value))
        }
        func gauge(_ name: String, _ help: String, _ labels: [(String, String)], _ value: Double) {
            r.makeGauge(descriptor: descriptor(name, help), labels: labels).set(value)
        }
        gauge("tern_build_info", "Tern's version.", [("version", TernVersion.string)], 1)
        gauge("tern_start_time_seconds", "When ternd started (Unix time).", [], info.startedAt)
        for (w, block) in stats.blocks.enumerated() {
            let worker = [("worker", String(w))]
            let outcomes = OutcomeCounters(reading: block)
            counter("tern_rx_packets_total", "Packets the worker took from its RX queues.", worker, block.load(CounterSlot.rx))
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
            counter("tern_tx_packets_total", "Frames transmitted.", worker, block.load(CounterSlot.tx))
            counter(
                "tern_tx_failed_packets_total", "Frames the TX queue refused (freed).", worker, block.load(CounterSlot.txFailed))
            counter(
                "tern_flows_inserted_total", "Flows inserted into the worker's flow table.", worker,
                block.load(CounterSlot.flowsInserted))
            counter("tern_flows_evicted_total", "Flows evicted from a full bucket.", worker, block.load(CounterSlot.flowsEvicted))
            for f in CounterSlot.features { counter("tern_\(f.name)_total", f.help, worker, block.load(f.slot)) }
        }
        let hostHelp = [
            "host_tx": "Frames handed to the kernel's host interfaces.", "host_rx": "Frames from the host interfaces sent out.",
            "host_dropped": "Host-bound frames lost: a worker's ring to the host path full, or the TAP refused them.",
            "host_rx_dropped": "Frames from the host interfaces lost on the way to the transmitting worker (ring full).",
        ]
        for (name, n) in stats.hostCounters {
            counter("tern_\(name)_packets_total", hostHelp[name] ?? name, [], n)
        }
        let totals = stats.publisher.totals()
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
        for (vip, fingerprint) in commands.tableFingerprints().sorted(by: { $0.key < $1.key }) {
            gauge(
                "tern_vip_table_info", "The running Maglev table's fingerprint: equal on every node means equal routing.",
                [("vip", vip), ("fingerprint", fingerprint)], 1)
        }
        let desired = reloader.desired
        for v in desired.config.vips {
            for b in v.backends where b.health != nil {
                let labels = [("vip", v.name), ("backend", b.address.description)]
                let h = info.health(BackendKey(vip: v.name, address: b.address)) ?? HealthState()
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
        for p in info.ports() {
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
        }
        gauge(
            "tern_config_generation", "Generation of the running forwarding snapshot.", [], Double(reloader.publisher.generation))
        counter("tern_config_reloads_total", "Reloads and runtime changes, by result.", [("result", "ok")], reloader.succeeded)
        counter("tern_config_reloads_total", "Reloads and runtime changes, by result.", [("result", "failed")], reloader.failed)
        gauge(
            "tern_config_last_reload_successful", "1 when the last reload succeeded (or none was tried).", [],
            reloader.last.map { $0.ok ? 1 : 0 } ?? 1)
        gauge(
            "tern_config_last_reload_success_timestamp_seconds", "When the running config was loaded (Unix time).", [],
            reloader.lastSuccessTime ?? info.startedAt)
        return r.emitToBuffer()
    }
}
