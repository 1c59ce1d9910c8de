// Every metric family ternd exposes, in exposition order: name, type, labels and help, written
// once. The renderer writes series only through these (a family it was not given cannot appear),
// and `ternctl reference metrics` prints docs/metrics-reference.md from the same list, which CI
// compares with the checked-in file.

import TernDataplane
import TernMetrics

/// One family: its HELP and TYPE lines and the labels each of its series carries, in order.
public struct MetricFamily: Sendable {
    public enum Kind: String, Sendable {
        case counter, gauge
    }
    public let name: String
    public let kind: Kind
    public let labels: [String]
    public let help: String
    /// The values a label takes when they are a fixed set (for the reference).
    public let labelValues: [String: [String]]

    init(_ name: String, _ kind: Kind, _ labels: [String], _ help: String, values: [String: [String]] = [:]) {
        self.name = name
        self.kind = kind
        self.labels = labels
        self.help = help
        self.labelValues = values
    }
}

public enum MetricsCatalog {
    /// A VIP's labels, as IPVS's exporter splits them: `address` (a CIDR VIP's first), `port`
    /// (0: every port), `protocol` (`tcp`, `udp`).
    static let vip = ["address", "port", "protocol"]

    static let buildInfo = MetricFamily("tern_build_info", .gauge, ["version"], "Tern's version.")
    static let startTime = MetricFamily("tern_start_time_seconds", .gauge, [], "When ternd started (Unix time).")

    // Per worker: the worker's own counter block.
    static let rx = MetricFamily("tern_rx_packets_total", .counter, ["worker"], "Packets the worker took from its RX queues.")
    static let forwarded = MetricFamily(
        "tern_forwarded_packets_total", .counter, ["worker"], "Packets encapsulated to a backend.")
    static let forwardedInFragments = MetricFamily(
        "tern_forwarded_in_fragments_packets_total", .counter, ["worker"],
        "Packets encapsulated to a backend as outer IPv4 fragments (no DF, too big).")
    static let host = MetricFamily("tern_host_packets_total", .counter, ["worker"], "Packets not for a VIP (the host's).")
    static let replied = MetricFamily(
        "tern_replied_packets_total", .counter, ["worker", "kind"], "Packets answered by Tern (ICMP).",
        values: ["kind": Outcome.replies.map(\.0)])
    static let held = MetricFamily(
        "tern_fragments_held_total", .counter, ["worker"],
        "IP fragments held until their datagram's first fragment passed (then counted by their outcome).")
    static let dropped = MetricFamily(
        "tern_dropped_packets_total", .counter, ["worker", "reason"], "Packets dropped, by reason.",
        values: ["reason": Outcome.dropReasons.map { $0.dropReason! }])
    static let tx = MetricFamily("tern_tx_packets_total", .counter, ["worker"], "Frames transmitted.")
    static let txFailed = MetricFamily(
        "tern_tx_failed_packets_total", .counter, ["worker"], "Frames the TX queue refused (freed).")
    static let flowsInserted = MetricFamily(
        "tern_flows_inserted_total", .counter, ["worker"], "Flows inserted into the worker's flow table.")
    static let flowsEvicted = MetricFamily(
        "tern_flows_evicted_total", .counter, ["worker"], "Flows evicted from a full bucket.")
    static let flowsExpired = MetricFamily(
        "tern_flows_expired_total", .counter, ["worker"], "Flows found idled out when their next packet came (placed anew).")
    static let flowTableEntries = MetricFamily(
        "tern_flow_table_entries", .gauge, ["worker"],
        "Live flows in the worker's flow table, as its last survey (a pass a few buckets at a time between bursts) counted.")
    static let flowTableCapacity = MetricFamily(
        "tern_flow_table_capacity", .gauge, [], "Flows each worker's table holds (dataplane.flow_table_entries, rounded up).")
    /// The per-feature counters (`CounterSlot.features`), one family each.
    static let features = CounterSlot.features.map { f in
        MetricFamily("tern_\(f.name)_total", .counter, ["worker"], f.help)
    }

    // The host path's counters, by their stats name.
    static let hostPath: [(stat: String, family: MetricFamily)] = [
        ("host_tx", "Frames handed to the kernel's host interfaces."),
        ("host_rx", "Frames from the host interfaces sent out."),
        ("host_dropped", "Host-bound frames lost: a worker's ring to the host path full, or the TAP refused them."),
        ("host_rx_dropped", "Frames from the host interfaces lost on the way to the transmitting worker (ring full)."),
    ].map { ($0.0, MetricFamily("tern_\($0.0)_packets_total", .counter, [], $0.1)) }

    // Per VIP and backend: the snapshots' counters, kept across reloads.
    static let vipPackets = MetricFamily("tern_vip_forwarded_packets_total", .counter, vip, "Packets forwarded for a VIP.")
    static let vipBytes = MetricFamily(
        "tern_vip_bytes_total", .counter, vip, "IP bytes of the clients' packets forwarded for a VIP (before encapsulation).")
    static let vipNewFlows = MetricFamily(
        "tern_vip_new_flows_total", .counter, vip, "Flows Maglev placed for a VIP (flow-table misses).")
    static let backendPackets = MetricFamily(
        "tern_backend_forwarded_packets_total", .counter, vip + ["backend"], "Packets forwarded to a VIP's backend.")
    static let backendBytes = MetricFamily(
        "tern_backend_bytes_total", .counter, vip + ["backend"],
        "IP bytes of the clients' packets forwarded to a VIP's backend (before encapsulation).")
    static let backendNewFlows = MetricFamily(
        "tern_backend_new_flows_total", .counter, vip + ["backend"], "Flows Maglev placed on a VIP's backend.")
    static let vipAnnounced = MetricFamily(
        "tern_vip_announced", .gauge, vip,
        "1 while ternd asks the BGP feed to announce the VIP's prefix (enough live backends, not shutting down).")
    static let vipTable = MetricFamily(
        "tern_vip_table_info", .gauge, vip + ["fingerprint"],
        "The running Maglev table's fingerprint: equal on every node means equal routing.")
    static let backendUp = MetricFamily(
        "tern_backend_up", .gauge, vip + ["backend"], "1 while the backend passes its health checks.")
    static let backendTransitions = MetricFamily(
        "tern_backend_health_transitions_total", .counter, vip + ["backend"], "Health changes (up to down, down to up).")
    static let backendWeight = MetricFamily(
        "tern_backend_weight", .gauge, vip + ["backend"], "The weight a backend has now (0 while drained).")

    // Per port: DPDK's figures for the device.
    static let portLinkUp = MetricFamily("tern_port_link_up", .gauge, ["port"], "1 when the port's link is up.")
    static let portStats: [(stat: String, family: MetricFamily)] = [
        ("ipackets", "tern_port_rx_packets_total", "Packets the device received."),
        ("opackets", "tern_port_tx_packets_total", "Packets the device sent."),
        ("imissed", "tern_port_rx_missed_packets_total", "Packets the device dropped: RX queues full."),
        ("rx_nombuf", "tern_port_rx_nombuf_total", "RX mbuf allocation failures."),
        ("ierrors", "tern_port_rx_errors_total", "Erroneous received packets."),
        ("oerrors", "tern_port_tx_errors_total", "Failed transmissions."),
    ].map { ($0.0, MetricFamily($0.1, .counter, ["port"], $0.2)) }
    static let portXDP = MetricFamily(
        "tern_port_xdp_packets_total", .counter, ["port", "verdict"],
        "Frames Tern's XDP program saw on an AF_XDP port: redirected (to ternd), passed (to the kernel), "
            + "no_socket (for a VIP, passed: no ternd socket on the queue).",
        values: ["verdict": ["redirected", "passed", "no_socket"]])

    // The control side.
    static let generation = MetricFamily(
        "tern_config_generation", .gauge, [], "Generation of the running forwarding snapshot.")
    static let reloads = MetricFamily(
        "tern_config_reloads_total", .counter, ["result"], "Reloads and runtime changes, by result.",
        values: ["result": ["ok", "failed"]])
    static let lastReloadOK = MetricFamily(
        "tern_config_last_reload_successful", .gauge, [], "1 when the last reload succeeded (or none was tried).")
    static let lastReloadTime = MetricFamily(
        "tern_config_last_reload_success_timestamp_seconds", .gauge, [], "When the running config was loaded (Unix time).")
    static let controlDropped = MetricFamily(
        "tern_control_clients_dropped_total", .counter, ["reason"],
        "Control-socket clients dropped: no request in time, a reply not taken in time, a request too long.",
        values: ["reason": ["silent", "slow_reader", "oversized"]])
    static let metricsConnections = MetricFamily(
        "tern_metrics_connections", .gauge, [], "Open connections to [metrics] listen.")
    static let metricsClosed = MetricFamily(
        "tern_metrics_connections_closed_total", .counter, ["reason"],
        "Metrics connections ternd closed: over the connection limit, idle or slow, or a malformed request.",
        values: ["reason": ["limit", "timeout", "malformed"]])

    static let fleetRevision = MetricFamily(
        "tern_fleet_revision", .gauge, [],
        "With [fleet]: the etcd revision of the site document this node runs (0: the file's VIPs).")
    static let fleetReachable = MetricFamily(
        "tern_fleet_reachable", .gauge, [],
        "With [fleet]: 1 while etcd answers this node's polls; 0: it forwards with what it has.")

    /// Every family, in exposition order.
    public static let all: [MetricFamily] =
        [buildInfo, startTime, rx, forwarded, forwardedInFragments, host, replied, held, dropped, tx, txFailed]
        + [flowsInserted, flowsEvicted, flowsExpired, flowTableEntries, flowTableCapacity] + features
        + hostPath.map(\.family)
        + [vipPackets, vipBytes, vipNewFlows, backendPackets, backendBytes, backendNewFlows, vipAnnounced, vipTable]
        + [backendUp, backendTransitions, backendWeight, portLinkUp] + portStats.map(\.family)
        + [portXDP, generation, reloads, lastReloadOK, lastReloadTime, controlDropped, metricsConnections, metricsClosed]
        + [fleetRevision, fleetReachable]

    /// A VIP's label values from its name (`192.0.2.10:80/tcp`, `[2001:db8::1]:443/udp`): the
    /// counters of a VIP gone from the config are kept by name only.
    static func vipLabels(_ name: String) -> [String] {
        guard let slash = name.lastIndex(of: "/"), let colon = name[..<slash].lastIndex(of: ":") else { return [name, "", ""] }
        var address = name[..<colon]
        if address.hasPrefix("["), address.hasSuffix("]") { address = address.dropFirst().dropLast() }
        return [String(address), String(name[name.index(after: colon)..<slash]), String(name[name.index(after: slash)...])]
    }

    /// docs/metrics-reference.md.
    public static func reference() -> String {
        var out = """
            # Metrics reference

            Generated by `ternctl reference metrics` from Tern's metric catalog
            (Sources/TernAgent/MetricsCatalog.swift); `make docs-check` fails when this file differs.
            ternd serves them at `[metrics] listen` (`GET /metrics`, Prometheus text format 0.0.4).
            A VIP's labels are `address`, `port` (0: every port) and `protocol`, as IPVS's exporter
            has them; a CIDR VIP is named by its first address.

            | metric | type | labels | meaning |
            |---|---|---|---|

            """
        for f in all {
            let labels = f.labels.map { l in
                f.labelValues[l].map { "`\(l)` (\($0.joined(separator: ", ")))" } ?? "`\(l)`"
            }
            let help = f.help.split(separator: "|", omittingEmptySubsequences: false).joined(separator: "\\|")
            out += "| `\(f.name)` | \(f.kind.rawValue) | \(labels.joined(separator: ", ")) | \(help) |\n"
        }
        return out
    }
}
