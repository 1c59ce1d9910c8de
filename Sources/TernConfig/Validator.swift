// Range and consistency checks over the document as read (`DocumentReader`): every value the
// schema types, read by `ConfigKey` and named in messages by the key's path in its table, so a
// renamed key cannot leave a stale name behind. Collects every problem instead of stopping at the
// first.

import TernBalancing
import TernWire

struct Validator {
    var problems: [ConfigProblem] = []
    /// Valid but worth saying (`TernConfig.notes`).
    var notes: [String] = []
    /// The value in force of every restart-only key, by key path, in file order.
    var restartOnly: [SettingValue] = []

    /// More would trap Maglev's 16-bit slots long before the table size does.
    static let maxBackendsPerVIP = 16384

    /// Memory no config may ask for, whatever the machine (ternd also checks what the machine has
    /// at start): Maglev tables of one snapshot (a reload holds two), and flow tables of all workers.
    static let maxMaglevBytes = 1 << 30
    static let maxFlowTableBytes = 64 << 30

    mutating func fail(_ path: String, _ message: String) { problems.append(ConfigProblem(path, message)) }

    /// Records the value in force of a restart-only key (what the reload diff compares).
    mutating func note(_ key: ConfigKey, _ path: String, _ value: String) {
        if key.restartOnly { restartOnly.append(SettingValue(path: path, value: value)) }
    }

    /// `[dataplane] flow_state` and `xdp_program`: nil unset (the default path), "" off (where
    /// `emptyMeans` says what it does), else an absolute file path.
    mutating func filePath(_ d: ConfigTable?, _ key: ConfigKey, emptyMeans: String?) -> String? {
        guard let d, let path = d.string(key) else {
            note(key, key.path, "default")
            return nil
        }
        if (path.isEmpty && emptyMeans == nil)
            || (!path.isEmpty && (!path.hasPrefix("/") || path.utf8.contains(0) || path.hasSuffix("/")))
        {
            let empty = emptyMeans.map { ", or \"\" for \($0)" } ?? ""
            fail(d.path(key), "must be an absolute file path\(empty), got \"\(escapedForMessage(path))\"")
        }
        note(key, key.path, path)
        return path
    }

    /// An integer key without a default: nil when unset (the consumer computes it).
    mutating func optionalInt(_ t: ConfigTable?, _ key: ConfigKey) -> Int? {
        guard let t, t.has(key) else {
            note(key, key.path, "computed")
            return nil
        }
        return int(t, key)
    }

    /// An integer key's value in table `t` within its range, else its default (or its lowest
    /// value); named by the table's path (`port[1].mtu`), or the key's own when `t` is absent.
    mutating func int(_ t: ConfigTable?, _ key: ConfigKey) -> Int {
        let range = key.range!
        let path = t?.path(key) ?? key.path
        var result = key.defaultValue ?? range.lowerBound
        if let value = t?.int(key) {
            if range.contains(value) {
                result = value
            } else {
                fail(path, "must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
            }
        }
        note(key, path, String(result))
        return result
    }

    /// Every address in the config is a VIP, a backend or a tunnel source: all must be unicast.
    /// A VIP's `address`: one address, or a prefix (`198.51.100.0/28`, at most 256 addresses,
    /// host bits zero) whose every address is the VIP.
    mutating func vipAddress(_ text: String, _ path: String) -> (IPAddress?, Int?) {
        guard let slash = text.firstIndex(of: "/") else { return (address(text, path), nil) }
        guard let first = address(String(text[..<slash]), path) else { return (nil, nil) }
        let lengthText = text[text.index(after: slash)...]
        let widest = first.bitWidth - 8
        guard let length = Int(lengthText), lengthText.allSatisfy(\.isNumber), (0...first.bitWidth).contains(length) else {
            fail(
                path,
                "not a prefix length: \"\(escapedForMessage(String(lengthText)))\" (\(first.isV6 ? "IPv6" : "IPv4") takes 0-\(first.bitWidth))"
            )
            return (nil, nil)
        }
        guard length >= widest else {
            fail(path, "/\(length) is too wide: a CIDR VIP covers at most 256 addresses (/\(widest))")
            return (nil, nil)
        }
        guard first.hasZeroHostBits(prefixLength: length) else {
            fail(path, "\(text) has host bits set: a CIDR VIP starts on its prefix boundary")
            return (nil, nil)
        }
        return (first, length)
    }

    mutating func address(_ text: String, _ path: String) -> IPAddress? {
        unicast(IPAddress(text), text, path, notA: "an IPv4 or IPv6 address", kind: "address", reason: \.notUnicastReason)
    }

    mutating func mac(_ text: String, _ path: String) -> MACAddress? {
        unicast(
            MACAddress(text), text, path, notA: "a MAC address (aa:bb:cc:dd:ee:ff)", kind: "MAC address",
            reason: \.notUnicastReason)
    }

    /// Which of `options` a string key says (the first when unset); nil, reported, for anything else.
    mutating func oneOf(_ t: ConfigTable, _ key: ConfigKey, _ options: [String]) -> Int? {
        let value = t.string(key) ?? options[0]
        if let i = options.firstIndex(of: value) { return i }
        let names = options.map { "\"\($0)\"" }.joined(separator: " or ")
        fail(t.path(key), "must be \(names), got \"\(escapedForMessage(value))\"")
        return nil
    }

    /// `parsed` (from `text`) when it parsed, reporting it when it is not unicast as well.
    mutating func unicast<A: CustomStringConvertible>(
        _ parsed: A?, _ text: String, _ path: String, notA: String, kind: String, reason: KeyPath<A, String?>
    ) -> A? {
        guard let a = parsed else {
            fail(path, "not \(notA): \"\(escapedForMessage(text))\"")
            return nil
        }
        if let why = a[keyPath: reason] { fail(path, "must be a unicast \(kind); \(a) is \(why)") }
        return a
    }

    /// The validated config from the document as read (`vips`: its own `[[vip]]` tables and those
    /// follow mode imported, each named by its path); nil when anything is wrong.
    mutating func validate(_ doc: ConfigTable, vips: [ConfigTable]) -> TernConfig? {
        typealias K = ConfigSchema
        let node = validateNode(doc.table(K.node))
        let d = doc.table(K.dataplane)
        let dataplane = DataplaneConfig(
            workers: int(d, K.workers), burstSize: int(d, K.burstSize), flowTableEntries: int(d, K.flowTableEntries),
            tcpIdleTimeoutSeconds: int(d, K.tcpIdleTimeout), udpIdleTimeoutSeconds: int(d, K.udpIdleTimeout),
            tcpClosingTimeoutSeconds: int(d, K.tcpClosingTimeout), rxDescriptors: optionalInt(d, K.rxDescriptors),
            txDescriptors: optionalInt(d, K.txDescriptors), mbufs: optionalInt(d, K.mbufs),
            flowState: filePath(d, K.flowState, emptyMeans: "none"), xdpProgram: filePath(d, K.xdpProgram, emptyMeans: nil))
        let (ports, portPaths) = validatePorts(doc)
        let maglev = doc.table(K.maglev)
        let tableSize = int(maglev, K.tableSize)
        if !Maglev.isPrime(tableSize) { fail(maglev?.path(K.tableSize) ?? K.tableSize.path, "must be prime, got \(tableSize)") }
        let (valid, vipPaths) = validateVIPs(vips, node: node, tableSize: tableSize)
        var config = TernConfig(node: node, dataplane: dataplane, ports: ports, tableSize: tableSize, vips: valid)
        let control = doc.table(K.control)
        if let socket = control?.string(K.controlSocket) {
            if !socket.hasPrefix("/") || socket.utf8.count > 107 || socket.utf8.contains(0) {
                fail(K.controlSocket.path, "must be an absolute path of at most 107 bytes, got \"\(escapedForMessage(socket))\"")
            }
            config.control.socket = socket
        }
        note(K.controlSocket, K.controlSocket.path, config.control.socket)
        let icmp = doc.table(K.icmp)
        config.icmp = ICMPConfig(tooBigPerSecond: int(icmp, K.icmpTooBig), echoPerSecond: int(icmp, K.icmpEcho))
        config.control.shutdownDrainSeconds = int(control, K.shutdownDrain)
        if let listen = doc.table(K.metrics)?.string(K.metricsListen) { config.metrics = metricsListen(listen) }
        note(K.metricsListen, K.metricsListen.path, config.metrics.map { "\($0.host) \($0.port)" } ?? "off")
        if let f = doc.table(K.fleet) {
            config.fleet = validateFleet(f)
        } else {
            for k in [
                K.fleetEndpoints, K.fleetPrefix, K.fleetNode, K.fleetCache, K.fleetPoll, K.fleetLease, K.fleetCA, K.fleetCert,
                K.fleetKey,
            ] {
                note(k, k.path, "none")
            }
        }
        for (v, path) in zip(config.vips, vipPaths) where v.fleetHealthQuorum && config.fleet == nil {
            fail("\(path).health.quorum", "\"fleet\" needs a [fleet] table: the verdicts are agreed through etcd")
        }
        checkMemory(config)
        checkLoops(config, vipPaths)
        checkBGPAttributes(config, vipPaths)
        checkGUEPortOverlap(config, vipPaths)
        checkMTU(config, portPaths)
        guard problems.isEmpty else { return nil }
        config.restartOnly = restartOnly
        return config
    }

    /// `[fleet]`: endpoints as URLs, a prefix etcd keys can live under.
    mutating func validateFleet(_ f: ConfigTable) -> FleetConfig? {
        typealias K = ConfigSchema
        var endpoints: [FleetConfig.Endpoint] = []
        for text in f.strings(K.fleetEndpoints) ?? [] {
            guard let e = FleetConfig.endpoint(text) else {
                fail(
                    f.path(K.fleetEndpoints),
                    "\"\(escapedForMessage(text))\" is not http://HOST:PORT or https://HOST:PORT"
                )
                continue
            }
            endpoints.append(e)
        }
        if endpoints.isEmpty && f.strings(K.fleetEndpoints) != nil {
            fail(f.path(K.fleetEndpoints), "needs at least one etcd endpoint")
        }
        let prefix = f.string(K.fleetPrefix) ?? ""
        if !prefix.hasPrefix("/") || prefix.hasSuffix("/") || prefix.count < 2 || prefix.utf8.contains(0) {
            fail(
                f.path(K.fleetPrefix),
                "must start with / and not end with one (\"/tern/site1\"), got \"\(escapedForMessage(prefix))\"")
        }
        let node = f.string(K.fleetNode)
        if let node, node.isEmpty || node.contains("/") { fail(f.path(K.fleetNode), "must be a name without /") }
        let cache = filePath(f, K.fleetCache, emptyMeans: nil) ?? FleetConfig.defaultCache
        let tls = FleetConfig.TLSFiles(
            ca: filePath(f, K.fleetCA, emptyMeans: nil), certificate: filePath(f, K.fleetCert, emptyMeans: nil),
            key: filePath(f, K.fleetKey, emptyMeans: nil))
        if (tls.certificate == nil) != (tls.key == nil) {
            fail(f.path(tls.certificate == nil ? K.fleetCert : K.fleetKey), "cert_file and key_file go together")
        }
        let usesTLS = endpoints.contains(where: \.tls)
        if !usesTLS && (tls.ca != nil || tls.certificate != nil) {
            fail(f.path(K.fleetEndpoints), "ca_file, cert_file and key_file need https:// endpoints")
        }
        if usesTLS && endpoints.contains(where: { !$0.tls }) {
            fail(f.path(K.fleetEndpoints), "all http:// or all https://, not both")
        }
        for (key, path) in [(K.fleetCA, tls.ca), (K.fleetCert, tls.certificate), (K.fleetKey, tls.key)] {
            if let path, case .failure(let why) = RegularFile.read(path, limit: 1 << 20) {
                fail(f.path(key), "cannot read \(path): \(why.description)")
            }
        }
        note(K.fleetEndpoints, K.fleetEndpoints.path, endpoints.map(\.description).joined(separator: ","))
        note(K.fleetPrefix, K.fleetPrefix.path, prefix)
        note(K.fleetNode, K.fleetNode.path, node ?? "default")
        return FleetConfig(
            endpoints: endpoints, prefix: prefix, node: node, cache: cache, pollMilliseconds: int(f, K.fleetPoll),
            leaseSeconds: int(f, K.fleetLease), tls: tls)
    }

    /// `HOST:PORT` (IPv6 in brackets): an address of this machine and a port.
    mutating func metricsListen(_ text: String) -> MetricsConfig? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port)
        else {
            fail(
                ConfigSchema.metricsListen.path,
                "must be HOST:PORT (127.0.0.1:9108, [::1]:9108), got \"\(escapedForMessage(text))\"")
            return nil
        }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard IPAddress(host) != nil else {
            fail(
                ConfigSchema.metricsListen.path,
                "the host must be an IP address of this machine, got \"\(escapedForMessage(String(host)))\"")
            return nil
        }
        return MetricsConfig(host: String(host), port: port)
    }

    /// Flow tables and Maglev tables within the documented caps.
    mutating func checkMemory(_ c: TernConfig) {
        let flowBytes = c.dataplane.workers * FlowTable.memoryBytes(capacity: c.dataplane.flowTableEntries)
        if flowBytes > Validator.maxFlowTableBytes {
            fail(
                ConfigSchema.flowTableEntries.path,
                "\(c.dataplane.workers) worker(s) x \(c.dataplane.flowTableEntries) entries need \(mib(flowBytes)) MiB of flow "
                    + "tables; the limit is \(mib(Validator.maxFlowTableBytes)) MiB")
        }
        let maglevBytes = c.maglevTableBytes
        if maglevBytes > Validator.maxMaglevBytes {
            fail(
                ConfigSchema.tableSize.path,
                "\(c.vips.count) VIPs x \(c.tableSize) slots need \(mib(maglevBytes)) MiB of Maglev tables; the limit is "
                    + "\(mib(Validator.maxMaglevBytes)) MiB per snapshot (a reload holds two)")
        }
    }

    func mib(_ bytes: Int) -> Int { (bytes + (1 << 20) - 1) >> 20 }

    /// A backend that is a VIP of this config would receive its own encapsulated packets back,
    /// growing until they are too big.
    mutating func checkLoops(_ c: TernConfig, _ paths: [String]) {
        var vipOfAddress: [IPAddress: Int] = [:]
        for (i, v) in c.vips.enumerated() {
            for a in v.addresses where vipOfAddress[a] == nil { vipOfAddress[a] = i }
        }
        for (i, v) in c.vips.enumerated() {
            for (j, b) in v.backends.enumerated() {
                if let k = vipOfAddress[b.address] {
                    fail(
                        ConfigSchema.backendAddress.at(ConfigSchema.backend.element(j, in: paths[i])),
                        "\(b.address) is a VIP address of this config (\(paths[k])): its packets would loop through Tern")
                }
            }
        }
    }

    /// One prefix, one set of BGP attributes: VIPs on one prefix that set `[vip.bgp]` must agree.
    mutating func checkBGPAttributes(_ c: TernConfig, _ paths: [String]) {
        var first: [String: Int] = [:]
        for (i, v) in c.vips.enumerated() where v.bgp != BGPAttributes() {
            if let k = first[v.prefix] {
                if c.vips[k].bgp != v.bgp {
                    fail(
                        ConfigSchema.bgp.at(paths[i]),
                        "differs from \(ConfigSchema.bgp.at(paths[k])): both are on \(v.prefix), which is announced once")
                }
            } else {
                first[v.prefix] = i
            }
        }
    }

    /// A UDP VIP that covers a GUE VIP's `gue_port` on the same address sends clients' UDP to that
    /// port to backends that decapsulate GUE on it: GUE inside GUE, which lets a client inject
    /// packets with any source. A GUE VIP's own `gue_port` is always dropped by the data plane
    /// (`gue_in_gue`); another VIP's is refused unless `allow_gue_port_overlap = true`.
    mutating func checkGUEPortOverlap(_ c: TernConfig, _ paths: [String]) {
        for (k, g) in c.vips.enumerated() where g.encapsulation == .gue {
            for (i, u) in c.vips.enumerated()
            where i != k && u.ipProtocol == IPProtocol.udp && u.overlaps(g) && (u.port == 0 || u.port == g.guePort)
                && !u.allowGUEPortOverlap
            {
                fail(
                    ConfigSchema.vipPort.at(paths[i]),
                    "\(u.name) covers UDP port \(g.guePort), the gue_port of \(g.name) (\(paths[k])): clients could send GUE "
                        + "inside GUE to its backends; set allow_gue_port_overlap = true if that is intended")
            }
        }
    }

    /// Each port that carries tunnels must fit the smallest packet a host may send (IPv6: 1280,
    /// IPv4: 576) plus the largest encapsulation overhead, or "too big" replies would carry an MTU
    /// hosts ignore (below IPv6's minimum) and the path black-holes.
    mutating func checkMTU(_ c: TernConfig, _ paths: [String]) {
        var overhead = 0
        var anyV6 = false
        for v in c.vips {
            anyV6 = anyV6 || v.address.isV6
            for b in v.backends {
                overhead = max(overhead, (b.address.isV6 ? 40 : 20) + (v.encapsulation == .gue ? 12 : 0))
            }
        }
        let minimum = (anyV6 ? 1280 : 576) + overhead
        for (i, p) in c.ports.enumerated() where c.ports.contains(where: { ($0.backendDevice ?? $0.device) == p.device }) {
            if p.mtu < minimum {
                fail(
                    ConfigSchema.portMTU.at(paths[i]),
                    "\(p.mtu) is too small: tunnels add up to \(overhead) bytes to packets of up to \(anyV6 ? "1280 (IPv6 VIPs)" : "576") "
                        + "bytes that hosts may send unfragmented; at least \(minimum)")
            }
        }
    }

    /// What Linux takes as an interface name (IFNAMSIZ - 1 bytes), less the characters DPDK's
    /// device arguments would split on.
    static func isInterfaceName(_ name: String) -> Bool {
        (1...15).contains(name.utf8.count) && name != "." && name != ".."
            && name.utf8.allSatisfy {
                $0 < 0x80
                    && (Character(Unicode.Scalar($0)).isLetter || Character(Unicode.Scalar($0)).isNumber || $0 == 0x2E
                        || $0 == 0x2D || $0 == 0x5F)
            }
    }

    /// `[node]`; a missing one (the reader said so) stands in as "-" so the rest is still checked.
    mutating func validateNode(_ t: ConfigTable?) -> NodeConfig {
        typealias K = ConfigSchema
        guard let t else { return NodeConfig(name: "-") }
        let name = t.string(K.nodeName) ?? ""
        if name.isEmpty { fail(t.path(K.nodeName), "must not be empty") }
        var node = NodeConfig(name: name)
        if let text = t.string(K.tunnelSourceV4), let a = address(text, t.path(K.tunnelSourceV4)) {
            if a.isV6 { fail(t.path(K.tunnelSourceV4), "must be an IPv4 address, got \(a)") }
            node.tunnelSourceV4 = a
        }
        if let text = t.string(K.tunnelSourceV6), let a = address(text, t.path(K.tunnelSourceV6)) {
            if !a.isV6 { fail(t.path(K.tunnelSourceV6), "must be an IPv6 address, got \(a)") }
            node.tunnelSourceV6 = a
        }
        return node
    }

    /// The `[[port]]` tables that name a device or an AF_XDP interface, and the key path of each.
    mutating func validatePorts(_ doc: ConfigTable) -> ([PortConfig], [String]) {
        typealias K = ConfigSchema
        let all = doc.tables(K.port)
        for p in all where !p.has(K.portDevice) && !p.has(K.portAFXDPInterface) {
            fail(p.path, "needs device (a DPDK device) or af_xdp_interface (a kernel interface ternd opens with AF_XDP)")
        }
        let tables = all.filter { $0.has(K.portDevice) || $0.has(K.portAFXDPInterface) }
        if all.isEmpty && doc.has(K.port) { fail(K.port.path, "at least one [[port]] is needed") }
        var seen = Set<String>()
        var ports: [PortConfig] = []
        for (i, p) in tables.enumerated() {
            let afXDP = p.string(K.portAFXDPInterface)
            let hostInterface = p.string(K.portHostInterface)
            if let afXDP {
                if p.has(K.portDevice) {
                    fail(p.path(K.portAFXDPInterface), "set device or af_xdp_interface, not both (ternd creates the AF_XDP port)")
                }
                if !Validator.isInterfaceName(afXDP) {
                    fail(
                        p.path(K.portAFXDPInterface),
                        "must be 1 to 15 letters, digits, '.', '-' or '_' (a Linux interface name), got \"\(escapedForMessage(afXDP))\""
                    )
                }
                if hostInterface != nil {
                    fail(
                        p.path(K.portHostInterface),
                        "not with af_xdp_interface: the kernel keeps \(escapedForMessage(afXDP)) and gets the node's own traffic itself"
                    )
                }
            }
            let device = afXDP.map(PortConfig.afXDPDevice) ?? p.string(K.portDevice)!
            let devicePath = afXDP == nil ? p.path(K.portDevice) : p.path(K.portAFXDPInterface)
            if device.isEmpty { fail(devicePath, "must not be empty") }
            if !seen.insert(device).inserted { fail(devicePath, "duplicate device \"\(escapedForMessage(device))\"") }
            let gatewayMACText = p.string(K.portGatewayMAC)
            let gatewayText = p.string(K.portGateway)
            let backendDevice = p.string(K.portBackendDevice)
            let gatewayMAC = gatewayMACText.flatMap { mac($0, p.path(K.portGatewayMAC)) }
            let gateway = gatewayText.flatMap { address($0, p.path(K.portGateway)) }
            if gatewayMACText == nil && gatewayText == nil {
                fail(p.path, "needs gateway_mac (the next hop's MAC) or gateway (its address, resolved on host_interface)")
            }
            if gatewayText != nil && gatewayMACText == nil && hostInterface == nil && afXDP == nil {
                fail(
                    p.path(K.portGateway),
                    "needs host_interface (or an af_xdp_interface): the next hop is resolved through the host's neighbour table on it"
                )
            }
            let own = p.string(K.portMAC).flatMap { mac($0, p.path(K.portMAC)) }
            note(K.portDevice, p.path(K.portDevice), device)
            note(K.portAFXDPInterface, p.path(K.portAFXDPInterface), afXDP ?? "none")
            note(K.portGatewayMAC, p.path(K.portGatewayMAC), gatewayMAC?.description ?? gatewayMACText ?? "learned")
            note(K.portGateway, p.path(K.portGateway), gateway?.description ?? gatewayText ?? "none")
            note(K.portMAC, p.path(K.portMAC), own?.description ?? "the device's")
            let mtu = int(p, K.portMTU)
            note(K.portBackendDevice, p.path(K.portBackendDevice), backendDevice ?? "this port")
            note(K.portHostInterface, p.path(K.portHostInterface), hostInterface ?? "none")
            if let name = hostInterface {
                if !Validator.isInterfaceName(name) {
                    fail(
                        p.path(K.portHostInterface),
                        "must be 1 to 15 letters, digits, '.', '-' or '_' (a Linux interface name), got \"\(escapedForMessage(name))\""
                    )
                } else if let other = tables[..<i].first(where: { $0.string(K.portHostInterface) == name }) {
                    fail(p.path(K.portHostInterface), "\"\(name)\" is already the host interface of \(other.path)")
                }
            }
            if let b = backendDevice, !tables.contains(where: { $0.string(K.portDevice) == b }) {
                fail(p.path(K.portBackendDevice), "\"\(escapedForMessage(b))\" is not the device of any [[port]]")
            }
            let clampMSS = p.bool(K.portClampMSS) ?? false
            note(K.portClampMSS, p.path(K.portClampMSS), "\(clampMSS)")
            let vlan = p.has(K.portVLAN) ? int(p, K.portVLAN) : nil
            if vlan == nil { note(K.portVLAN, p.path(K.portVLAN), "untagged") }
            ports.append(
                PortConfig(
                    device: device, gatewayMAC: gatewayMAC, mac: own, mtu: mtu, backendDevice: backendDevice,
                    hostInterface: hostInterface, gateway: gateway, clampMSS: clampMSS, vlan: vlan, afXDPInterface: afXDP))
        }
        return (ports, tables.map(\.path))
    }

    /// The valid VIPs and the key path of each (`vip[3]`, or an imported VIP's origin; invalid ones
    /// are left out). VIPs without address, port or protocol were reported by the reader.
    mutating func validateVIPs(_ tables: [ConfigTable], node: NodeConfig, tableSize: Int) -> ([VIPConfig], [String]) {
        typealias K = ConfigSchema
        var seen: [String: String] = [:]
        var vips: [VIPConfig] = []
        var paths: [String] = []
        for r in tables {
            guard let addressText = r.string(K.vipAddress), r.has(K.vipPort), r.has(K.vipProtocol) else {
                continue
            }
            let path = r.path
            let (address, prefixLength) = vipAddress(addressText, r.path(K.vipAddress))
            let port = int(r, K.vipPort)
            let ipProtocol = oneOf(r, K.vipProtocol, ["tcp", "udp"]) == 1 ? IPProtocol.udp : IPProtocol.tcp
            var encapsulation = Encapsulation.ipip
            var guePort: UInt16 = 0
            let encap = r.string(K.vipEncap)
            switch encap ?? "ipip" {
            case "ipip":
                if r.has(K.guePort) { fail(r.path(K.guePort), "only allowed with encap = \"gue\"") }
            case "gue":
                encapsulation = .gue
                if r.has(K.guePort) {
                    guePort = UInt16(int(r, K.guePort))
                } else {
                    fail(r.path(K.guePort), "required with encap = \"gue\"")
                }
            default: fail(r.path(K.vipEncap), "must be \"ipip\" or \"gue\", got \"\(escapedForMessage(encap ?? ""))\"")
            }
            let problemsBefore = problems.count
            let healthTable = r.table(K.health)
            let health = healthTable.flatMap { validateHealth($0, vipPort: port) }
            // A backend's own keys are checked over the VIP's only when those are sound (else
            // every backend would repeat the VIP's problems).
            let inherited = problems.count == problemsBefore ? healthTable ?? ConfigTable(path: r.path(K.health)) : nil
            let backends = validateBackends(r, node: node, tableSize: tableSize, health: (inherited, health), vipPort: port)
            guard let address else { continue }
            var vip = VIPConfig(
                address: address, port: UInt16(port), ipProtocol: ipProtocol, encapsulation: encapsulation,
                guePort: guePort, backends: backends, allowGUEPortOverlap: r.bool(K.allowGUEPortOverlap) ?? false)
            vip.prefixLength = prefixLength
            vip.quic = r.bool(K.vipQUIC) ?? false
            validateQUIC(vip, r)
            vip.clampMSS = r.bool(K.vipClampMSS) ?? false
            if vip.clampMSS && vip.ipProtocol != IPProtocol.tcp {
                fail(r.path(K.vipClampMSS), "MSS is a TCP option: needs protocol = \"tcp\"")
            }
            let secondChance = r.bool(K.vipSecondChance)
            vip.secondChance = (secondChance ?? true) && encapsulation == .gue && ipProtocol == IPProtocol.tcp
            if secondChance == true && !vip.secondChance {
                notes.append(
                    "\(r.path(K.vipSecondChance)): only GUE TCP VIPs carry a second hop (\(encapsulation == .gue ? "UDP has no SYN to tell a new flow" : "IP in IP has no room for it")): off"
                )
            }
            vip.health = health
            if let h = healthTable { vip.fleetHealthQuorum = oneOf(h, K.healthQuorum, ["node", "fleet"]) == 1 }
            if let g = r.table(K.bgp) { vip.bgp = validateBGP(g) }
            vip.minHealthy = int(r, K.minHealthy)
            if let h = r.string(K.vipHash) {
                if let known = VIPConfig.hashNames.first(where: { $0.name == h }) {
                    vip.hashMode = known.mode
                } else {
                    let names = VIPConfig.hashNames.map { "\"\($0.name)\"" }.joined(separator: ", ")
                    fail(r.path(K.vipHash), "must be one of \(names), got \"\(escapedForMessage(h))\"")
                }
            }
            // Per address: a CIDR VIP's addresses may not be another VIP's (same port and protocol).
            for a in vip.addresses {
                let name = serviceName(address: a, port: vip.port, ipProtocol: vip.ipProtocol)
                if let first = seen[name] {
                    fail(path, "duplicate VIP \(name) (also \(first))")
                    break
                }
                seen[name] = path
            }
            vips.append(vip)
            paths.append(path)
        }
        return (vips, paths)
    }

    /// `[vip.health]` (or a backend's own keys over its VIP's): nil when `check` is "none" or absent.
    mutating func validateHealth(_ h: ConfigTable, vipPort: Int) -> HealthConfig? {
        typealias K = ConfigSchema
        let interval = int(h, K.healthInterval)
        let timeout = int(h, K.healthTimeout)
        if timeout > interval { fail(h.path(K.healthTimeout), "\(timeout) is longer than interval_ms (\(interval))") }
        let rise = int(h, K.healthRise)
        let fall = int(h, K.healthFall)
        let status = int(h, K.healthExpectStatus)
        let keep = oneOf(h, K.healthAllDown, ["withdraw", "keep"]) == 1
        let checkPath = h.string(K.healthPath)
        if let p = checkPath, !p.hasPrefix("/") || p.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }) {
            fail(
                h.path(K.healthPath),
                "must start with / and hold no spaces or control characters, got \"\(escapedForMessage(p))\"")
        }
        let checkName = h.string(K.healthCheck) ?? "none"
        if checkName == "none" { return nil }
        guard let check = HealthConfig.Check(rawValue: checkName) else {
            fail(h.path(K.healthCheck), "must be \"tcp\", \"http\", \"dns\" or \"none\", got \"\(escapedForMessage(checkName))\"")
            return nil
        }
        let port = h.has(K.healthPort) ? int(h, K.healthPort) : vipPort
        if port == 0 { fail(h.path(K.healthPort), "required: the VIP has port 0 (every port)") }
        return HealthConfig(
            check: check, port: UInt16(max(0, min(port, 65535))), intervalMilliseconds: interval, timeoutMilliseconds: timeout,
            rise: rise, fall: fall, path: checkPath ?? "/", expectStatus: status, keepWhenAllDown: keep)
    }

    /// `[vip.bgp]`: a MED and standard communities (`65000:100 65000:200`).
    mutating func validateBGP(_ g: ConfigTable) -> BGPAttributes {
        typealias K = ConfigSchema
        var out = BGPAttributes()
        if g.has(K.bgpMED) { out.med = int(g, K.bgpMED) }
        for c in (g.string(K.bgpCommunities) ?? "").split(separator: " ") {
            let parts = c.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ UInt16($0) != nil }) else {
                fail(g.path(K.bgpCommunities), "\"\(escapedForMessage(String(c)))\" is not ASN:VALUE (0-65535 each)")
                continue
            }
            out.communities.append(String(c))
        }
        return out
    }

    /// `quic = true` only on UDP VIPs; `quic_server_id` only on their backends, once per VIP.
    mutating func validateQUIC(_ vip: VIPConfig, _ r: ConfigTable) {
        typealias K = ConfigSchema
        if vip.quic && vip.ipProtocol != IPProtocol.udp {
            fail(r.path(K.vipQUIC), "QUIC runs over UDP: needs protocol = \"udp\"")
        }
        var seen: [Int: Int] = [:]
        for (j, b) in r.tables(K.backend).enumerated() {
            guard let id = b.int(K.backendQUICServerID) else { continue }
            let idPath = b.path(K.backendQUICServerID)
            if !vip.quic {
                fail(idPath, "only on backends of a VIP with quic = true")
            } else if let first = seen[id] {
                fail(idPath, "\(id) is also backend[\(first)]'s: a server id names one backend")
            }
            seen[id] = j
        }
    }

    /// `health`: the VIP's health keys when sound (nil otherwise) and its validated check.
    mutating func validateBackends(
        _ vip: ConfigTable, node: NodeConfig, tableSize: Int, health: (table: ConfigTable?, check: HealthConfig?), vipPort: Int
    ) -> [BackendConfig] {
        typealias K = ConfigSchema
        let all = vip.tables(K.backend)
        let tables = all.filter { $0.has(K.backendAddress) }  // the reader reported the others
        let path = vip.path(K.backend)
        if tables.isEmpty { fail(path, "a VIP needs at least one [[vip.backend]]") }
        if tables.count > Validator.maxBackendsPerVIP {
            fail(path, "\(tables.count) backends; at most \(Validator.maxBackendsPerVIP) per VIP")
        } else if tables.count >= tableSize {
            fail(path, "\(tables.count) backends need a \(K.tableSize.path) above \(tables.count)")
        }
        var seen: [IPAddress: Int] = [:]
        var backends: [BackendConfig] = []
        for (j, b) in all.enumerated() {
            guard let addressText = b.string(K.backendAddress) else { continue }
            let weight = int(b, K.backendWeight)
            let draining = oneOf(b, K.backendState, ["active", "draining"]) == 1
            let addressPath = b.path(K.backendAddress)
            guard let a = address(addressText, addressPath) else { continue }
            if let first = seen[a] {
                fail(addressPath, "duplicate backend \(a) (also backend[\(first)])")
            }
            seen[a] = j
            if a.isV6 && node.tunnelSourceV6 == nil {
                fail(addressPath, "IPv6 backend \(a) needs \(K.tunnelSourceV6.path)")
            }
            if !a.isV6 && node.tunnelSourceV4 == nil {
                fail(addressPath, "IPv4 backend \(a) needs \(K.tunnelSourceV4.path)")
            }
            var backend = BackendConfig(address: a, weight: weight, draining: draining, health: health.check)
            if b.has(K.backendQUICServerID) { backend.quicServerID = UInt32(int(b, K.backendQUICServerID)) }
            if let own = b.table(K.backendHealth), let inherited = health.table {
                backend.health = validateHealth(inherited.overridden(by: own), vipPort: vipPort)
            }
            backends.append(backend)
        }
        return backends
    }
}
