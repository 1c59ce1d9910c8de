// Every config key Tern reads, in one place: its path, TOML type, whether it is required, its
// range and default (integers), and whether a reload may change it. The reader takes keys and
// types from here, the validator ranges and defaults, the reload diff the restart-only flag, the
// unknown-key check the list, and a test holds configs/reference.toml to all of it.

public struct ConfigKey: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case string, integer, boolean, table, tables
        /// An array of strings (`endpoints = ["http://...", ...]`).
        case strings
    }

    /// Dotted, without array indices: `vip.backend.weight`.
    public let path: String
    public let kind: Kind
    public let required: Bool
    /// Integers only.
    public let range: ClosedRange<Int>?
    public let defaultValue: Int?
    /// A reload that changes it is refused: it shapes queues, memory or listeners at start-up.
    public let restartOnly: Bool

    init(
        _ path: String, _ kind: Kind, required: Bool = false, range: ClosedRange<Int>? = nil, default d: Int? = nil,
        restartOnly: Bool = false
    ) {
        self.path = path
        self.kind = kind
        self.required = required
        self.range = range
        self.defaultValue = d
        self.restartOnly = restartOnly
        if let dot = path.lastIndex(of: ".") {
            table = String(path[..<dot])
            name = String(path[path.index(after: dot)...])
        } else {
            table = ""
            name = path
        }
    }

    /// The table holding the key (`vip.backend`; "" at the top). Split from `path` once: the
    /// reader asks for every key of every backend.
    public let table: String
    /// The key's own name (`weight`).
    public let name: String

    /// This key's path in a message, inside the table at `table` (`port[0]` gives `port[0].mtu`;
    /// "" gives the key's own path).
    public func at(_ table: String) -> String { table.isEmpty ? path : "\(table).\(name)" }

    /// Element `i` of this array of tables, inside `parent` (`vip[1]` gives `vip[1].backend[0]`).
    public func element(_ i: Int, in parent: String = "") -> String { "\(at(parent))[\(i)]" }
}

public enum ConfigSchema {
    public static let node = ConfigKey("node", .table, required: true)
    public static let nodeName = ConfigKey("node.name", .string, required: true)
    public static let tunnelSourceV4 = ConfigKey("node.tunnel_source_v4", .string)
    public static let tunnelSourceV6 = ConfigKey("node.tunnel_source_v6", .string)

    public static let control = ConfigKey("control", .table)
    public static let controlSocket = ConfigKey("control.socket", .string, restartOnly: true)
    public static let shutdownDrain = ConfigKey("control.shutdown_drain_s", .integer, range: 0...300, default: 0)

    /// Follow mode: VIPs another tool's files define, read again on every load (`Import/`).
    public static let importTable = ConfigKey("import", .table)
    public static let importKeepalived = ConfigKey("import.keepalived", .string)
    public static let importIPVSAdm = ConfigKey("import.ipvsadm", .string)

    public static let metrics = ConfigKey("metrics", .table)
    public static let metricsListen = ConfigKey("metrics.listen", .string, restartOnly: true)

    public static let dataplane = ConfigKey("dataplane", .table)
    public static let workers = ConfigKey("dataplane.workers", .integer, range: 1...64, default: 1, restartOnly: true)
    public static let burstSize = ConfigKey("dataplane.burst_size", .integer, range: 1...512, default: 32, restartOnly: true)
    public static let flowTableEntries = ConfigKey(
        "dataplane.flow_table_entries", .integer, range: 1024...(1 << 28), default: 1_048_576, restartOnly: true)
    public static let tcpIdleTimeout = ConfigKey(
        "dataplane.tcp_idle_timeout_s", .integer, range: 1...86_400, default: 300, restartOnly: true)
    public static let udpIdleTimeout = ConfigKey(
        "dataplane.udp_idle_timeout_s", .integer, range: 1...86_400, default: 30, restartOnly: true)

    public static let tcpClosingTimeout = ConfigKey(
        "dataplane.tcp_closing_timeout_s", .integer, range: 1...86_400, default: 10, restartOnly: true)
    /// Ring sizes per queue; unset: 1,024 adjusted to what each device takes (set: checked against it).
    public static let rxDescriptors = ConfigKey("dataplane.rx_descriptors", .integer, range: 16...65_535, restartOnly: true)
    public static let txDescriptors = ConfigKey("dataplane.tx_descriptors", .integer, range: 16...65_535, restartOnly: true)
    public static let defaultDescriptors = 1024
    /// Where the flow tables live so that the next ternd re-attaches them; unset: under /run/tern
    /// (`DataplaneConfig.defaultFlowState`), "": off.
    public static let flowState = ConfigKey("dataplane.flow_state", .string, restartOnly: true)
    /// The mbuf pool; unset: computed from rings, bursts, host path and net_pcap replays (`MbufPlan`).
    /// Tern's XDP program for `af_xdp_interface` ports; unset: `lib/tern/tern_xdp.o` beside ternd's
    /// `bin` (where `make install` and the build put it).
    public static let xdpProgram = ConfigKey("dataplane.xdp_program", .string, restartOnly: true)
    public static let mbufs = ConfigKey("dataplane.mbufs", .integer, range: 1024...(1 << 26), restartOnly: true)

    public static let port = ConfigKey("port", .tables, required: true)
    /// A DPDK device (an EAL `-a`/`--vdev` name); a port names it or `af_xdp_interface`.
    public static let portDevice = ConfigKey("port.device", .string, restartOnly: true)
    /// A kernel interface ternd opens through DPDK's net_af_xdp with Tern's XDP program: the kernel
    /// keeps the NIC and gets everything that is not for a VIP.
    public static let portAFXDPInterface = ConfigKey("port.af_xdp_interface", .string, restartOnly: true)
    public static let portGatewayMAC = ConfigKey("port.gateway_mac", .string, restartOnly: true)
    public static let portGateway = ConfigKey("port.gateway", .string, restartOnly: true)
    public static let portMAC = ConfigKey("port.mac", .string, restartOnly: true)
    public static let portMTU = ConfigKey("port.mtu", .integer, range: 1280...9216, default: 1500, restartOnly: true)
    public static let portBackendDevice = ConfigKey("port.backend_device", .string, restartOnly: true)
    public static let portHostInterface = ConfigKey("port.host_interface", .string, restartOnly: true)
    public static let portClampMSS = ConfigKey("port.clamp_mss", .boolean, restartOnly: true)
    public static let portVLAN = ConfigKey("port.vlan", .integer, range: 1...4094, restartOnly: true)

    public static let icmp = ConfigKey("icmp", .table)
    public static let icmpTooBig = ConfigKey(
        "icmp.too_big_per_second", .integer, range: 0...1_000_000, default: 1000, restartOnly: true)
    public static let icmpEcho = ConfigKey(
        "icmp.echo_per_second", .integer, range: 0...10_000_000, default: 10_000, restartOnly: true)

    public static let maglev = ConfigKey("maglev", .table)
    public static let tableSize = ConfigKey("maglev.table_size", .integer, range: 7...10_000_019, default: 65537)

    public static let vip = ConfigKey("vip", .tables)
    public static let vipAddress = ConfigKey("vip.address", .string, required: true)
    public static let vipPort = ConfigKey("vip.port", .integer, required: true, range: 0...65535)
    public static let vipProtocol = ConfigKey("vip.protocol", .string, required: true)
    public static let vipEncap = ConfigKey("vip.encap", .string)
    public static let guePort = ConfigKey("vip.gue_port", .integer, range: 1...65535)
    public static let allowGUEPortOverlap = ConfigKey("vip.allow_gue_port_overlap", .boolean)
    public static let minHealthy = ConfigKey("vip.min_healthy", .integer, range: 1...16384, default: 1)
    public static let vipHash = ConfigKey("vip.hash", .string)
    public static let vipQUIC = ConfigKey("vip.quic", .boolean)
    public static let vipClampMSS = ConfigKey("vip.clamp_mss", .boolean)
    /// Packets of connections this node never saw carry the backend the VIP's previous table
    /// named, for Tern's backend program to send them on (GUE TCP VIPs; default on for those).
    public static let vipSecondChance = ConfigKey("vip.second_chance", .boolean)

    public static let health = ConfigKey("vip.health", .table)
    public static let healthCheck = ConfigKey("vip.health.check", .string)
    public static let healthPort = ConfigKey("vip.health.port", .integer, range: 1...65535)
    public static let healthInterval = ConfigKey("vip.health.interval_ms", .integer, range: 100...3_600_000, default: 1000)
    public static let healthTimeout = ConfigKey("vip.health.timeout_ms", .integer, range: 10...60_000, default: 500)
    public static let healthRise = ConfigKey("vip.health.rise", .integer, range: 1...100, default: 2)
    public static let healthFall = ConfigKey("vip.health.fall", .integer, range: 1...100, default: 3)
    public static let healthPath = ConfigKey("vip.health.path", .string)
    public static let healthExpectStatus = ConfigKey("vip.health.expect_status", .integer, range: 100...599, default: 200)
    public static let healthAllDown = ConfigKey("vip.health.all_down", .string)
    public static let healthQuorum = ConfigKey("vip.health.quorum", .string)

    public static let backend = ConfigKey("vip.backend", .tables)
    public static let backendAddress = ConfigKey("vip.backend.address", .string, required: true)
    public static let backendWeight = ConfigKey("vip.backend.weight", .integer, range: 0...65535, default: 100)
    public static let backendState = ConfigKey("vip.backend.state", .string)
    public static let backendQUICServerID = ConfigKey("vip.backend.quic_server_id", .integer, range: 1...4_294_967_295)
    /// One backend's own check where it differs from the VIP's (another port or path, or "none").
    public static let backendHealth = ConfigKey("vip.backend.health", .table)
    public static let backendHealthCheck = ConfigKey("vip.backend.health.check", .string)
    public static let backendHealthPort = ConfigKey("vip.backend.health.port", .integer, range: 1...65535)
    public static let backendHealthPath = ConfigKey("vip.backend.health.path", .string)
    public static let backendHealthExpectStatus = ConfigKey("vip.backend.health.expect_status", .integer, range: 100...599)

    /// What a BGP speaker attaches to the VIP's prefix (`ternctl bgp-feed`).
    public static let bgp = ConfigKey("vip.bgp", .table)
    public static let bgpMED = ConfigKey("vip.bgp.med", .integer, range: 0...4_294_967_295)
    public static let bgpCommunities = ConfigKey("vip.bgp.communities", .string)

    /// The fleet store (etcd): where the site's VIPs and drains live and this node reports.
    public static let fleet = ConfigKey("fleet", .table)
    public static let fleetEndpoints = ConfigKey("fleet.endpoints", .strings, required: true, restartOnly: true)
    public static let fleetPrefix = ConfigKey("fleet.prefix", .string, required: true, restartOnly: true)
    public static let fleetNode = ConfigKey("fleet.node", .string, restartOnly: true)
    public static let fleetCache = ConfigKey("fleet.cache", .string, restartOnly: true)
    public static let fleetPoll = ConfigKey("fleet.poll_ms", .integer, range: 50...10_000, default: 250, restartOnly: true)
    public static let fleetLease = ConfigKey("fleet.lease_s", .integer, range: 2...60, default: 5, restartOnly: true)
    public static let fleetCA = ConfigKey("fleet.ca_file", .string, restartOnly: true)
    public static let fleetCert = ConfigKey("fleet.cert_file", .string, restartOnly: true)
    public static let fleetKey = ConfigKey("fleet.key_file", .string, restartOnly: true)

    public static let all: [ConfigKey] = [
        node, nodeName, tunnelSourceV4, tunnelSourceV6, control, controlSocket, shutdownDrain, importTable, importKeepalived,
        importIPVSAdm, metrics, metricsListen, dataplane, workers,
        burstSize, flowTableEntries, flowState, xdpProgram, tcpIdleTimeout, udpIdleTimeout, tcpClosingTimeout, rxDescriptors,
        txDescriptors,
        mbufs, port,
        portDevice, portAFXDPInterface, portGatewayMAC, portGateway, portMAC, portMTU,
        portBackendDevice, portHostInterface, portClampMSS, portVLAN, icmp, icmpTooBig, icmpEcho, maglev, tableSize, vip,
        vipAddress, vipPort, vipProtocol, vipEncap, guePort,
        allowGUEPortOverlap, minHealthy, vipHash, vipQUIC, vipClampMSS, vipSecondChance, health, healthCheck, healthPort,
        healthInterval,
        healthTimeout, healthRise, healthFall, healthPath,
        healthExpectStatus, healthAllDown, healthQuorum, backend, backendAddress, backendWeight, backendState,
        backendQUICServerID,
        backendHealth, backendHealthCheck,
        backendHealthPort, backendHealthPath, backendHealthExpectStatus, bgp, bgpMED, bgpCommunities, fleet, fleetEndpoints,
        fleetPrefix, fleetNode, fleetCache, fleetPoll, fleetLease, fleetCA, fleetCert, fleetKey,
    ]

    /// The keys a table may hold ("" is the top level), in the order of `all`. Worked out once:
    /// every table of every backend asks (a config of 100,000 backends spent most of its load
    /// time filtering the key list).
    public static func keys(in table: String) -> [ConfigKey] { keysByTable[table] ?? [] }

    static let keysByTable: [String: [ConfigKey]] = Dictionary(grouping: all, by: \.table)

    /// Tables with restart-only keys, as a config writes them (`[dataplane]`, `[[port]]`).
    public static var restartOnlyTables: [String] {
        all.filter { t in (t.kind == .table || t.kind == .tables) && all.contains { $0.restartOnly && $0.table == t.path } }
            .map { $0.kind == .table ? "[\($0.path)]" : "[[\($0.path)]]" }
    }
}

/// A restart-only key's value in force, by key path (`port[0].mtu`).
public struct SettingValue: Equatable, Sendable {
    public var path: String
    public var value: String
}
