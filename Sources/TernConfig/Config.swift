// Tern's configuration, as validated values. See configs/reference.toml for every key.

import TernBalancing
import TernWire

public struct NodeConfig: Equatable, Sendable {
    public var name: String
    public var tunnelSourceV4: IPAddress?
    public var tunnelSourceV6: IPAddress?
}

/// Restart-only: a reload that changes it is refused.
public struct DataplaneConfig: Equatable, Sendable {
    public var workers = ConfigSchema.workers.defaultValue!
    public var burstSize = ConfigSchema.burstSize.defaultValue!
    public var flowTableEntries = ConfigSchema.flowTableEntries.defaultValue!
    public var tcpIdleTimeoutSeconds = ConfigSchema.tcpIdleTimeout.defaultValue!
    public var udpIdleTimeoutSeconds = ConfigSchema.udpIdleTimeout.defaultValue!
    public var tcpClosingTimeoutSeconds = ConfigSchema.tcpClosingTimeout.defaultValue!
    /// nil: `ConfigSchema.defaultDescriptors`, adjusted to each device's limits.
    public var rxDescriptors: Int? = nil
    public var txDescriptors: Int? = nil
    /// nil: computed (`MbufPlan`).
    public var mbufs: Int? = nil
    /// The flow-state file: nil for the default (`defaultFlowState`), "" for none.
    public var flowState: String? = nil
    /// Tern's XDP program (AF_XDP ports); nil: `defaultXDPProgram`.
    public var xdpProgram: String? = nil

    /// The flow-state file of a ternd on DPDK file prefix `prefix` when the config names none.
    /// /run/tern/flows is a tmpfs with huge pages when `run-tern-flows.mount` (shipped) is active.
    public static func defaultFlowState(prefix: String) -> String { "/run/tern/flows/\(prefix)" }

    /// The XDP program of a ternd at `executable` when the config names none (`Installed.libFile`).
    public static func defaultXDPProgram(executable: String) -> String { Installed.libFile("tern_xdp.o", executable: executable) }
}

/// Restart-only: per worker and second, the too-big answers Tern sends.
public struct ICMPConfig: Equatable, Sendable {
    public var tooBigPerSecond = ConfigSchema.icmpTooBig.defaultValue!
    /// Echo replies, per worker and second.
    public var echoPerSecond = ConfigSchema.icmpEcho.defaultValue!
}

/// Restart-only: a reload that changes it is refused.
public struct PortConfig: Equatable, Sendable {
    /// The DPDK device; for an AF_XDP port, the one ternd creates (`afXDPDevice`).
    public var device: String
    /// The next hop's MAC as configured (`gateway_mac`); nil: learned for `gateway`.
    public var gatewayMAC: MACAddress?
    /// The port's own MAC, when set; otherwise the device's (`ternctl simulate` then uses
    /// `PortPlan.simulatedMAC`).
    public var mac: MACAddress?
    public var mtu = ConfigSchema.portMTU.defaultValue!
    /// The device encapsulated packets received here leave on (another `[[port]]`); nil: this
    /// port (one-armed). Replies always leave on the port the request came in on.
    public var backendDevice: String? = nil
    /// The kernel interface (a TAP ternd creates) that host-bound frames received here go to, and
    /// whose frames leave here; nil: host-bound frames are counted and freed.
    public var hostInterface: String? = nil
    /// The next hop's address, whose MAC ternd learns from the kernel's neighbour table on the
    /// host interface (when `gateway_mac` is not set).
    public var gateway: IPAddress? = nil
    /// Lower the MSS option of TCP SYNs received here to what the tunnel toward the backends carries.
    public var clampMSS = false
    /// 802.1Q VLAN id: what Tern transmits here is tagged with it, and tagged frames received here
    /// with another id go to the host path; nil: untagged.
    public var vlan: Int? = nil
    /// The kernel interface ternd opens with net_af_xdp (`af_xdp_interface`); nil: `device` is DPDK's.
    public var afXDPInterface: String? = nil

    /// The device name ternd gives the net_af_xdp port on kernel interface `name`.
    public static func afXDPDevice(_ name: String) -> String { "net_af_xdp_\(name)" }

    /// The kernel interface whose neighbour table holds the next hop (`gateway`): the host
    /// interface, or the AF_XDP port's own interface, which the kernel keeps.
    public var kernelInterface: String? { hostInterface ?? afXDPInterface }

    /// Whether the next hop's MAC is learned at run time rather than configured.
    public var learnsGateway: Bool { gatewayMAC == nil && gateway != nil }
}

public struct BackendConfig: Equatable, Sendable {
    public var address: IPAddress
    public var weight: Int
    /// `state = "draining"` in the config: weight 0 (keeps its connections, gets no new ones).
    public var draining = false
    /// Its check: the VIP's `[vip.health]` with this backend's `[vip.backend.health]` keys over it;
    /// nil: not checked (counts as up).
    public var health: HealthConfig? = nil
    /// The server id its QUIC connection IDs carry (`quic_server_id`, on `quic` VIPs).
    public var quicServerID: UInt32? = nil
}

/// `[vip.bgp]`: route attributes a BGP feed attaches to the VIP's prefix.
public struct BGPAttributes: Equatable, Sendable {
    public var med: Int? = nil
    /// Standard communities, `ASN:VALUE` (16 bits each).
    public var communities: [String] = []

    public init(med: Int? = nil, communities: [String] = []) {
        self.med = med
        self.communities = communities
    }
}

/// How a VIP's backends are checked (`[vip.health]`).
public struct HealthConfig: Equatable, Sendable {
    public enum Check: String, Sendable {
        /// A TCP connection that is accepted.
        case tcp
        /// `GET path` over HTTP/1.1 answered with `expectStatus`.
        case http
        /// A DNS query (over UDP) that is answered.
        case dns
    }

    public var check: Check
    public var port: UInt16
    public var intervalMilliseconds: Int
    public var timeoutMilliseconds: Int
    public var rise: Int
    public var fall: Int
    public var path = "/"
    public var expectStatus = 200
    /// Every backend down: withdraw the VIP (drop its packets, `no_backend`), or send to all as if up.
    public var keepWhenAllDown = false
}

public struct VIPConfig: Equatable, Sendable {
    /// The VIP's address; for a CIDR VIP (`address = "198.51.100.0/28"`) the prefix's first.
    public var address: IPAddress
    /// A CIDR VIP's prefix length (every address in the prefix is the VIP); nil: one address.
    public var prefixLength: Int? = nil
    public var port: UInt16
    public var ipProtocol: UInt8
    public var encapsulation: Encapsulation
    public var guePort: UInt16
    public var backends: [BackendConfig]
    /// Accept a UDP port range that covers a GUE VIP's `gue_port` on the same address.
    public var allowGUEPortOverlap = false
    /// `[vip.health]` as written (each backend's own check is `BackendConfig.health`); nil: none.
    public var health: HealthConfig? = nil
    public var bgp = BGPAttributes()
    /// Backends up (and taking new flows) it needs to be announced.
    public var minHealthy = ConfigSchema.minHealthy.defaultValue!
    /// What Maglev hashes for a new flow (`hash = "5-tuple" | "source" | "source-port-less"`).
    public var hashMode = FlowHash.Mode.fiveTuple
    /// New flows whose QUIC connection ID names a backend's `quic_server_id` go to that backend.
    public var quic = false
    /// TCP SYNs opening a connection to it have their MSS option lowered to what the tunnel carries.
    public var clampMSS = false
    /// Second chance (`second_chance`): on for GUE TCP VIPs unless set false; IPIP cannot carry it.
    public var secondChance = false
    /// `[vip.health] quorum = "fleet"`: a backend is down when more than half of the fleet's live
    /// nodes see it down, so every node builds the same table.
    public var fleetHealthQuorum = false

    public var protocolName: String { ipProtocol == IPProtocol.tcp ? "tcp" : "udp" }

    /// `hash` values as configs write them.
    public static let hashNames: [(name: String, mode: FlowHash.Mode)] = [
        ("5-tuple", .fiveTuple), ("source", .source), ("source-port-less", .sourcePortLess),
    ]

    /// `hash` as the config writes it.
    public var hashName: String { Self.hashNames.first { $0.mode == hashMode }!.name }

    /// `192.0.2.10:80/tcp` or `[2001:db8::1]:443/udp` (a CIDR VIP by its first address).
    public var name: String { serviceName(address: address, port: port, ipProtocol: ipProtocol) }

    /// Every address the VIP answers on: one, or each of its prefix's.
    public var addresses: [IPAddress] {
        guard let p = prefixLength else { return [address] }
        return (0..<(UInt64(1) << UInt64(address.bitWidth - p))).map { address.advanced(by: $0) }
    }

    /// What BGP announces for it: `192.0.2.10/32`, or the CIDR VIP's prefix.
    public var prefix: String { "\(address)/\(prefixLength ?? address.bitWidth)" }

    /// Whether the VIP answers on `other`.
    public func covers(_ other: IPAddress) -> Bool {
        guard other.isV6 == address.isV6 else { return false }
        guard let p = prefixLength else { return other == address }
        let count = UInt64(1) << UInt64(address.bitWidth - p)
        return other.high == address.high && other.low >= address.low && other.low - address.low < count
    }

    /// Whether the two VIPs share an address (aligned prefixes overlap when one holds the other's start).
    public func overlaps(_ other: VIPConfig) -> Bool { covers(other.address) || other.covers(address) }
}

/// Restart-only: where ternd listens for ternctl.
public struct ControlConfig: Equatable, Sendable {
    public static let defaultSocket = "/run/tern/ternd.sock"
    public var socket = ControlConfig.defaultSocket
    /// On SIGTERM: report every VIP down (so a BGP feed withdraws them) and keep forwarding this long.
    public var shutdownDrainSeconds = ConfigSchema.shutdownDrain.defaultValue!
}

/// Restart-only: where Prometheus scrapes `GET /metrics`; off when `listen` is absent.
public struct MetricsConfig: Equatable, Sendable {
    public var host: String
    public var port: Int
}

/// `[fleet]`: the site's VIPs and drains come from etcd (a document under `prefix`), and this node
/// reports there what it runs.
public struct FleetConfig: Equatable, Sendable {
    /// etcd client URLs (`http://HOST:PORT`), tried in order.
    public var endpoints: [Endpoint]
    /// Keys live under it: `PREFIX/config` (the site document), `PREFIX/drains/...`, `PREFIX/nodes/NAME`.
    public var prefix: String
    /// This node's name under `PREFIX/nodes/` (default: the host name).
    public var node: String?
    /// Where the last applied site document is kept, for a start while etcd is away.
    public var cache: String
    public var pollMilliseconds: Int
    public var leaseSeconds: Int
    /// For https endpoints: the CA that signed etcd's certificate (nil: the system's roots) and
    /// this node's client certificate and key (etcd's --client-cert-auth), PEM files.
    public var tls = TLSFiles()

    public struct TLSFiles: Equatable, Sendable {
        public var ca: String? = nil
        public var certificate: String? = nil
        public var key: String? = nil
        public init(ca: String? = nil, certificate: String? = nil, key: String? = nil) {
            self.ca = ca
            self.certificate = certificate
            self.key = key
        }
    }

    public struct Endpoint: Equatable, Sendable {
        public var host: String
        public var port: Int
        public var tls = false
        public var description: String { "\(tls ? "https" : "http")://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
    }

    public static let defaultCache = "/var/lib/tern/fleet-cache.toml"

    /// `http://HOST:PORT` or `https://HOST:PORT` (IPv6 in brackets).
    public static func endpoint(_ text: String) -> Endpoint? {
        let tls = text.hasPrefix("https://")
        guard tls || text.hasPrefix("http://") else { return nil }
        var rest = text.dropFirst(tls ? "https://".count : "http://".count)
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port)
        else { return nil }
        var host = rest[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty, !host.contains("/"), !host.contains("@") else { return nil }
        return Endpoint(host: String(host), port: port, tls: tls)
    }
}

public struct TernConfig: Equatable, Sendable {
    public var node: NodeConfig
    public var control = ControlConfig()
    public var metrics: MetricsConfig? = nil
    public var fleet: FleetConfig? = nil
    public var dataplane: DataplaneConfig
    public var icmp = ICMPConfig()
    public var ports: [PortConfig]
    public var tableSize: Int
    public var vips: [VIPConfig]
    /// The value in force of every restart-only key by key path (`port[0].mtu`), in file order:
    /// what a reload compares (see `restartOnlyChanges`).
    public var restartOnly: [SettingValue] = []
    /// What `[import]` brought in but not exactly as its source meant (`file:line: ...`), for the log.
    public var importWarnings: [String] = []
    /// What `ternctl check` notes about a valid config (a key that cannot take effect as written).
    public var notes: [String] = []

    public var backendCount: Int { vips.reduce(0) { $0 + $1.backends.count } }

    /// Bytes of Maglev tables in one snapshot (2 per slot).
    public var maglevTableBytes: Int { vips.count * tableSize * MemoryLayout<UInt16>.size }

    /// Bytes of flow tables over all workers.
    public var flowTableBytes: Int { dataplane.workers * FlowTable.memoryBytes(capacity: dataplane.flowTableEntries) }

    /// One line for logs and `ternctl check`.
    public var summary: String {
        let workers = dataplane.workers
        return "\(vips.count) VIPs, \(backendCount) backends, \(ports.count) port\(ports.count == 1 ? "" : "s"), "
            + "\(workers) worker\(workers == 1 ? "" : "s"), table size \(tableSize)"
    }

    /// What the forwarding snapshot is built from.
    public var snapshotSpec: SnapshotSpec {
        SnapshotSpec(
            services: vips.map { v in
                var s = ServiceSpec(
                    address: v.address, port: v.port, ipProtocol: v.ipProtocol, encapsulation: v.encapsulation,
                    guePort: v.guePort, backends: v.backends.map { ($0.address, $0.draining ? 0 : $0.weight) })
                s.hashMode = v.hashMode
                s.addresses = v.addresses
                s.quic = v.quic
                s.clampMSS = v.clampMSS
                s.secondChance = v.secondChance
                if v.quic {
                    s.quicServerIDs = Dictionary(
                        v.backends.compactMap { b in b.quicServerID.map { (b.address, $0) } }, uniquingKeysWith: { a, _ in a })
                }
                return s
            },
            tableSize: tableSize, tunnelSourceV4: node.tunnelSourceV4, tunnelSourceV6: node.tunnelSourceV6)
    }

    /// The VIP a selector names, if any.
    public func vip(matching s: VIPSelector) -> VIPConfig? {
        vips.first { $0.covers(s.address) && $0.port == s.port && $0.ipProtocol == s.ipProtocol }
    }
}

/// `ADDR:PORT/PROTO`, as `ternctl table --vip` takes it; IPv6 addresses in brackets.
public struct VIPSelector: Equatable, Sendable {
    public var address: IPAddress
    public var port: UInt16
    public var ipProtocol: UInt8

    public init?(_ text: String) {
        guard let slash = text.lastIndex(of: "/"), let colon = text[..<slash].lastIndex(of: ":") else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        let proto = text[text.index(after: slash)...]
        guard let address = IPAddress(host), let port = UInt16(text[text.index(after: colon)..<slash]) else { return nil }
        switch proto {
        case "tcp": ipProtocol = IPProtocol.tcp
        case "udp": ipProtocol = IPProtocol.udp
        default: return nil
        }
        self.address = address
        self.port = port
    }
}
