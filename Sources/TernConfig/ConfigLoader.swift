// swift-format-ignore-file: AlwaysUseLowerCamelCase
// TOML text → validated `TernConfig`. `TOMLParser` reads the document (strict TOML 1.0, errors
// with line and column); `DocumentReader` takes the keys Tern knows into raw structs, reporting
// wrong types, missing and unknown keys with their lines; `Validator` then range-checks every
// value. Every problem is collected, so one run of `ternctl check` lists them all.

import Foundation
import TernBalancing
import TernWire

public enum ConfigLoader {
    /// The largest config file read (a 1000 VIP x 100 backend file is about 5 MB).
    public static let maxFileBytes = TOMLParser.maxBytes

    /// Reads and validates a config file.
    public static func load(path: String) throws(ConfigError) -> TernConfig {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ConfigError(file: path, problems: [ConfigProblem("", "cannot read the file")])
        }
        defer { try? handle.close() }
        let data: Data
        do {
            data = try handle.read(upToCount: maxFileBytes + 1) ?? Data()
        } catch {
            throw ConfigError(file: path, problems: [ConfigProblem("", "cannot read the file: \(error.localizedDescription)")])
        }
        guard data.count <= maxFileBytes else {
            throw ConfigError(file: path, problems: [ConfigProblem("", "larger than \(maxFileBytes) bytes")])
        }
        return try parse(Array(data), file: path)
    }

    /// Validates config text; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> TernConfig {
        try parse(Array(text.utf8), file: file)
    }

    public static func parse(_ bytes: [UInt8], file: String) throws(ConfigError) -> TernConfig {
        let document: TOMLTable
        do {
            document = try TOMLParser.parse(bytes)
        } catch {
            throw ConfigError(file: file, line: error.line, column: error.column, problems: [ConfigProblem("", error.message)])
        }
        var reader = DocumentReader()
        var raw = reader.config(document)
        var importWarnings: [String] = []
        for (key, path, kind) in [
            (ConfigSchema.importKeepalived, raw.importKeepalived, ImportKind.keepalived),
            (ConfigSchema.importIPVSAdm, raw.importIPVSAdm, .ipvsadm),
        ] {
            guard let path else { continue }
            let resolved = path.hasPrefix("/") ? path : KeepalivedReader.directory(of: file) + path
            switch importedVIPs(kind, path: resolved) {
            case .success(let (vips, warnings)):
                raw.vip = (raw.vip ?? []) + vips
                importWarnings += warnings
            case .failure(let error):
                reader.fail(
                    key.path, "cannot import \(escapedForMessage(path)):\n" + error.description, line: reader.line(of: key.path))
            }
        }
        var v = Validator()
        let config = v.validate(raw)
        // A key the reader could not take is reported once, by the reader.
        let reported = Set(reader.problems.map(\.keyPath))
        let problems = (reader.problems + v.problems.filter { !reported.contains($0.keyPath) }).map { p in
            var p = p
            p.line = p.line ?? reader.line(of: p.keyPath)
            return p
        }
        guard var config, problems.isEmpty else { throw ConfigError(file: file, problems: problems) }
        config.importWarnings = importWarnings
        return config
    }
}

// The document as Tern reads it: optional where a default exists.
struct RawConfig {
    var node: RawNode
    var controlSocket: String?
    var shutdownDrain: Int?
    var metricsListen: String?
    var dataplane: RawDataplane?
    var port: [RawPort]
    var maglev: RawMaglev?
    var vip: [RawVIP]?
    var importKeepalived: String?
    var importIPVSAdm: String?
    var icmpTooBig: Int?
    var icmpEcho: Int?
}

struct RawNode {
    var name: String
    var tunnel_source_v4: String?
    var tunnel_source_v6: String?
}

struct RawDataplane {
    var workers: Int?
    var burst_size: Int?
    var flow_table_entries: Int?
    var tcp_idle_timeout_s: Int?
    var udp_idle_timeout_s: Int?
    var tcp_closing_timeout_s: Int?
    var rx_descriptors: Int?
    var tx_descriptors: Int?
    var mbufs: Int?
}

struct RawPort {
    var device: String
    var gateway_mac: String?
    var gateway: String?
    var mac: String?
    var mtu: Int?
    var backend_device: String?
    var host_interface: String?
    var clamp_mss: Bool?
    var vlan: Int?
}

struct RawMaglev {
    var table_size: Int?
}

struct RawVIP {
    /// Imported VIPs: where they came from, naming them in problems instead of `vip[N]`.
    var origin: String? = nil
    var address: String
    var port: Int
    var `protocol`: String
    var encap: String?
    var gue_port: Int?
    var allow_gue_port_overlap: Bool?
    var min_healthy: Int?
    var hash: String?
    var quic: Bool?
    var clamp_mss: Bool?
    var health: RawHealth?
    var bgp: RawBGP?
    var backend: [RawBackend]?
}

struct RawBGP {
    var med: Int?
    var communities: String?
}

struct RawHealth {
    var check: String?
    var port: Int?
    var interval_ms: Int?
    var timeout_ms: Int?
    var rise: Int?
    var fall: Int?
    var path: String?
    var expect_status: Int?
    var all_down: String?

    /// These keys, with `other`'s where it has them (a backend's own over its VIP's).
    func overridden(by other: RawHealth) -> RawHealth {
        RawHealth(
            check: other.check ?? check, port: other.port ?? port, interval_ms: interval_ms, timeout_ms: timeout_ms, rise: rise,
            fall: fall, path: other.path ?? path, expect_status: other.expect_status ?? expect_status, all_down: all_down)
    }
}

struct RawBackend {
    var address: String
    var weight: Int?
    var state: String?
    var quic_server_id: Int?
    var health: RawHealth?
}

/// Reads the keys Tern knows from a parsed document, with their types; records every key path's
/// line so that later problems can name it too.
struct DocumentReader {
    var problems: [ConfigProblem] = []
    private var lines: [String: Int] = [:]

    func line(of keyPath: String) -> Int? {
        var path = Substring(keyPath)
        while !path.isEmpty {
            if let l = lines[String(path)] { return l }
            guard let cut = path.lastIndex(where: { $0 == "." || $0 == "[" }) else { break }
            path = path[..<cut]
        }
        return nil
    }

    /// Everything that could be read; what could not is in `problems` (a missing node or port
    /// leaves a placeholder so that the rest is still checked).
    mutating func config(_ doc: TOMLTable) -> RawConfig {
        typealias K = ConfigSchema
        let t = Table(doc, path: "")
        unknown(t)
        let metricsListen = table(t, K.metrics).flatMap { m -> String? in
            unknown(m)
            return string(m, K.metricsListen)
        }
        var shutdownDrain: Int?
        let controlSocket = table(t, K.control).flatMap { c -> String? in
            unknown(c)
            shutdownDrain = int(c, K.shutdownDrain)
            return string(c, K.controlSocket)
        }
        let node = table(t, K.node).map { n in
            unknown(n)
            return RawNode(
                name: string(n, K.nodeName) ?? "", tunnel_source_v4: string(n, K.tunnelSourceV4),
                tunnel_source_v6: string(n, K.tunnelSourceV6))
        }
        let dataplane = table(t, K.dataplane).map { d in
            unknown(d)
            return RawDataplane(
                workers: int(d, K.workers), burst_size: int(d, K.burstSize), flow_table_entries: int(d, K.flowTableEntries),
                tcp_idle_timeout_s: int(d, K.tcpIdleTimeout), udp_idle_timeout_s: int(d, K.udpIdleTimeout),
                tcp_closing_timeout_s: int(d, K.tcpClosingTimeout), rx_descriptors: int(d, K.rxDescriptors),
                tx_descriptors: int(d, K.txDescriptors), mbufs: int(d, K.mbufs))
        }
        let ports = tables(t, K.port)?.compactMap { p -> RawPort? in
            unknown(p)
            let device = string(p, K.portDevice)
            let port = RawPort(
                device: device ?? "", gateway_mac: string(p, K.portGatewayMAC), gateway: string(p, K.portGateway),
                mac: string(p, K.portMAC), mtu: int(p, K.portMTU), backend_device: string(p, K.portBackendDevice),
                host_interface: string(p, K.portHostInterface), clamp_mss: bool(p, K.portClampMSS),
                vlan: int(p, K.portVLAN))
            return device == nil ? nil : port
        }
        let maglev = table(t, K.maglev).map { m in
            unknown(m)
            return RawMaglev(table_size: int(m, K.tableSize))
        }
        let icmp = table(t, K.icmp).map { i -> (tooBig: Int?, echo: Int?) in
            unknown(i)
            return (int(i, K.icmpTooBig), int(i, K.icmpEcho))
        }
        var imports: (keepalived: String?, ipvsadm: String?)
        if let i = table(t, K.importTable) {
            unknown(i)
            imports = (string(i, K.importKeepalived), string(i, K.importIPVSAdm))
        }
        return RawConfig(
            node: node ?? RawNode(name: "-"), controlSocket: controlSocket, shutdownDrain: shutdownDrain,
            metricsListen: metricsListen,
            dataplane: dataplane, port: ports ?? [], maglev: maglev, vip: vips(t), importKeepalived: imports.keepalived,
            importIPVSAdm: imports.ipvsadm, icmpTooBig: icmp?.tooBig, icmpEcho: icmp?.echo)
    }

    /// The `[[vip]]` tables of a document (Tern's own, or those an import rendered).
    mutating func vips(_ t: Table) -> [RawVIP]? {
        typealias K = ConfigSchema
        return tables(t, K.vip)?.compactMap { v -> RawVIP? in
            unknown(v)
            let backends = tables(v, K.backend)?.compactMap { b -> RawBackend? in
                unknown(b)
                let weight = int(b, K.backendWeight)
                let state = string(b, K.backendState)
                let health = table(b, K.backendHealth).map { h in
                    unknown(h)
                    return RawHealth(
                        check: string(h, K.backendHealthCheck), port: int(h, K.backendHealthPort),
                        path: string(h, K.backendHealthPath),
                        expect_status: int(h, K.backendHealthExpectStatus))
                }
                let serverID = int(b, K.backendQUICServerID)
                return string(b, K.backendAddress).map {
                    RawBackend(address: $0, weight: weight, state: state, quic_server_id: serverID, health: health)
                }
            }
            let address = string(v, K.vipAddress)
            let port = int(v, K.vipPort)
            let proto = string(v, K.vipProtocol)
            let encap = string(v, K.vipEncap)
            let guePort = int(v, K.guePort)
            let overlap = bool(v, K.allowGUEPortOverlap)
            let minHealthy = int(v, K.minHealthy)
            let hash = string(v, K.vipHash)
            let quic = bool(v, K.vipQUIC)
            let clampMSS = bool(v, K.vipClampMSS)
            let health = table(v, K.health).map { h in
                unknown(h)
                return RawHealth(
                    check: string(h, K.healthCheck), port: int(h, K.healthPort), interval_ms: int(h, K.healthInterval),
                    timeout_ms: int(h, K.healthTimeout), rise: int(h, K.healthRise), fall: int(h, K.healthFall),
                    path: string(h, K.healthPath), expect_status: int(h, K.healthExpectStatus),
                    all_down: string(h, K.healthAllDown))
            }
            let bgp = table(v, K.bgp).map { g in
                unknown(g)
                return RawBGP(med: int(g, K.bgpMED), communities: string(g, K.bgpCommunities))
            }
            guard let address, let port, let proto else { return nil }
            return RawVIP(
                address: address, port: port, protocol: proto, encap: encap, gue_port: guePort, allow_gue_port_overlap: overlap,
                min_healthy: minHealthy, hash: hash, quic: quic, clamp_mss: clampMSS, health: health, bgp: bgp, backend: backends)
        }
    }

    /// A table being read and the key path that names it.
    struct Table {
        var table: TOMLTable
        /// The key path naming this table in messages (`vip[2].backend[0]`).
        var path: String
        /// The schema's name for it (`vip.backend`).
        var schemaPath: String
        init(_ table: TOMLTable, path: String, schemaPath: String = "") {
            self.table = table
            self.path = path
            self.schemaPath = schemaPath
        }
        func path(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
    }

    mutating func fail(_ path: String, _ message: String, line: Int? = nil) {
        var p = ConfigProblem(path, message)
        p.line = line
        problems.append(p)
    }

    /// The entry for a key, or nil after reporting a missing required key.
    mutating func entry(_ t: Table, _ key: String, required: Bool) -> TOMLEntry? {
        guard let e = t.table[key] else {
            if required { fail(t.path(key), "required key is missing", line: line(of: t.path)) }
            return nil
        }
        lines[t.path(key)] = e.line
        return e
    }

    mutating func wrongType(_ t: Table, _ key: String, _ e: TOMLEntry, expected: String) {
        fail(t.path(key), "wrong type: got \(e.value.typeName), expected \(expected)", line: e.line)
    }

    /// A key's value when `extract` takes it; a wrong type is reported as `expected`.
    mutating func typed<T>(_ t: Table, _ key: ConfigKey, expected: String, _ extract: (TOMLValue) -> T?) -> T? {
        guard let e = entry(t, key.name, required: key.required) else { return nil }
        guard let v = extract(e.value) else {
            wrongType(t, key.name, e, expected: expected)
            return nil
        }
        return v
    }

    mutating func string(_ t: Table, _ key: ConfigKey) -> String? {
        precondition(key.kind == .string)
        return typed(t, key, expected: "string") { if case .string(let s) = $0 { s } else { nil } }
    }

    mutating func int(_ t: Table, _ key: ConfigKey) -> Int? {
        precondition(key.kind == .integer)
        return typed(t, key, expected: "integer") { if case .integer(let n) = $0 { Int(n) } else { nil } }
    }

    mutating func bool(_ t: Table, _ key: ConfigKey) -> Bool? {
        precondition(key.kind == .boolean)
        return typed(t, key, expected: "boolean") { if case .boolean(let b) = $0 { b } else { nil } }
    }

    mutating func table(_ t: Table, _ key: ConfigKey) -> Table? {
        precondition(key.kind == .table)
        return typed(t, key, expected: "table ([\(t.path(key.name))])") {
            if case .table(let inner) = $0 { Table(inner, path: t.path(key.name), schemaPath: key.path) } else { nil }
        }
    }

    /// An array of tables (`[[key]]`), each element named `key[i]`.
    mutating func tables(_ t: Table, _ key: ConfigKey) -> [Table]? {
        precondition(key.kind == .tables)
        guard let e = entry(t, key.name, required: key.required) else { return nil }
        let expected = "array of tables ([[\(t.path(key.name))]])"
        guard case .array(let items) = e.value else {
            wrongType(t, key.name, e, expected: expected)
            return nil
        }
        var out: [Table] = []
        for (i, item) in items.enumerated() {
            guard case .table(let inner) = item else {
                wrongType(t, key.name, e, expected: expected)
                return nil
            }
            let path = "\(t.path(key.name))[\(i)]"
            if let first = inner.keys.first, let l = inner[first]?.line { lines[path] = l } else { lines[path] = e.line }
            out.append(Table(inner, path: path, schemaPath: key.path))
        }
        return out
    }

    /// Reports every key of `t` the schema does not list for its table.
    mutating func unknown(_ t: Table) {
        let known = ConfigSchema.names(in: t.schemaPath)
        for key in t.table.keys where !known.contains(key) {
            fail(t.path(quotedKey(key)), "unknown key", line: t.table[key]?.line)
        }
    }

    func quotedKey(_ key: String) -> String {
        key.utf8.allSatisfy {
            $0 < 0x80
                && ($0 == 0x5F || $0 == 0x2D || Character(Unicode.Scalar($0)).isLetter || Character(Unicode.Scalar($0)).isNumber)
        } && !key.isEmpty
            ? key : "\"\(escapedForMessage(key))\""
    }
}

/// Range and consistency checks; collects every problem instead of stopping at the first.
struct Validator {
    var problems: [ConfigProblem] = []
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

    /// An integer key without a default: nil when unset (the consumer computes it).
    mutating func optionalInt(_ value: Int?, _ key: ConfigKey) -> Int? {
        guard let value else {
            note(key, key.path, "computed")
            return nil
        }
        return int(value, key)
    }

    /// An integer key's value within its range, else its default (or its lowest value).
    mutating func int(_ value: Int?, _ key: ConfigKey, at path: String? = nil) -> Int {
        let range = key.range!
        let path = path ?? key.path
        var result = key.defaultValue ?? range.lowerBound
        if let value {
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
        guard let a = IPAddress(text) else {
            fail(path, "not an IPv4 or IPv6 address: \"\(escapedForMessage(text))\"")
            return nil
        }
        if let reason = a.notUnicastReason {
            fail(path, "must be a unicast address; \(a) is \(reason)")
        }
        return a
    }

    mutating func mac(_ text: String, _ path: String) -> MACAddress? {
        guard let m = MACAddress(text) else {
            fail(path, "not a MAC address (aa:bb:cc:dd:ee:ff): \"\(escapedForMessage(text))\"")
            return nil
        }
        if let reason = m.notUnicastReason {
            fail(path, "must be a unicast MAC address; \(m) is \(reason)")
        }
        return m
    }

    mutating func validate(_ raw: RawConfig) -> TernConfig? {
        let node = validateNode(raw.node)
        typealias K = ConfigSchema
        let d = raw.dataplane
        let dataplane = DataplaneConfig(
            workers: int(d?.workers, K.workers), burstSize: int(d?.burst_size, K.burstSize),
            flowTableEntries: int(d?.flow_table_entries, K.flowTableEntries),
            tcpIdleTimeoutSeconds: int(d?.tcp_idle_timeout_s, K.tcpIdleTimeout),
            udpIdleTimeoutSeconds: int(d?.udp_idle_timeout_s, K.udpIdleTimeout),
            tcpClosingTimeoutSeconds: int(d?.tcp_closing_timeout_s, K.tcpClosingTimeout),
            rxDescriptors: optionalInt(d?.rx_descriptors, K.rxDescriptors),
            txDescriptors: optionalInt(d?.tx_descriptors, K.txDescriptors),
            mbufs: optionalInt(d?.mbufs, K.mbufs))
        let ports = validatePorts(raw.port)
        let tableSize = int(raw.maglev?.table_size, K.tableSize)
        if !Maglev.isPrime(tableSize) { fail("maglev.table_size", "must be prime, got \(tableSize)") }
        let (vips, vipPaths) = validateVIPs(raw.vip ?? [], node: node, tableSize: tableSize)
        var config = TernConfig(node: node, dataplane: dataplane, ports: ports, tableSize: tableSize, vips: vips)
        if let socket = raw.controlSocket {
            if !socket.hasPrefix("/") || socket.utf8.count > 107 || socket.utf8.contains(0) {
                fail("control.socket", "must be an absolute path of at most 107 bytes, got \"\(escapedForMessage(socket))\"")
            }
            config.control.socket = socket
        }
        note(K.controlSocket, K.controlSocket.path, config.control.socket)
        config.icmp = ICMPConfig(tooBigPerSecond: int(raw.icmpTooBig, K.icmpTooBig), echoPerSecond: int(raw.icmpEcho, K.icmpEcho))
        config.control.shutdownDrainSeconds = int(raw.shutdownDrain, K.shutdownDrain)
        if let listen = raw.metricsListen { config.metrics = metricsListen(listen) }
        note(K.metricsListen, K.metricsListen.path, config.metrics.map { "\($0.host) \($0.port)" } ?? "off")
        checkMemory(config)
        checkLoops(config, vipPaths)
        checkBGPAttributes(config, vipPaths)
        checkGUEPortOverlap(config, vipPaths)
        checkMTU(config)
        guard problems.isEmpty else { return nil }
        config.restartOnly = restartOnly
        return config
    }

    /// `HOST:PORT` (IPv6 in brackets): an address of this machine and a port.
    mutating func metricsListen(_ text: String) -> MetricsConfig? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port)
        else {
            fail("metrics.listen", "must be HOST:PORT (127.0.0.1:9108, [::1]:9108), got \"\(escapedForMessage(text))\"")
            return nil
        }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard IPAddress(host) != nil else {
            fail("metrics.listen", "the host must be an IP address of this machine, got \"\(escapedForMessage(String(host)))\"")
            return nil
        }
        return MetricsConfig(host: String(host), port: port)
    }

    /// Flow tables and Maglev tables within the documented caps.
    mutating func checkMemory(_ c: TernConfig) {
        let flowBytes = c.dataplane.workers * FlowTable.memoryBytes(capacity: c.dataplane.flowTableEntries)
        if flowBytes > Validator.maxFlowTableBytes {
            fail(
                "dataplane.flow_table_entries",
                "\(c.dataplane.workers) worker(s) x \(c.dataplane.flowTableEntries) entries need \(mib(flowBytes)) MiB of flow "
                    + "tables; the limit is \(mib(Validator.maxFlowTableBytes)) MiB")
        }
        let maglevBytes = c.maglevTableBytes
        if maglevBytes > Validator.maxMaglevBytes {
            fail(
                "maglev.table_size",
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
                        "\(paths[i]).backend[\(j)].address",
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
                    fail("\(paths[i]).bgp", "differs from \(paths[k]).bgp: both are on \(v.prefix), which is announced once")
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
                    "\(paths[i]).port",
                    "\(u.name) covers UDP port \(g.guePort), the gue_port of \(g.name) (\(paths[k])): clients could send GUE "
                        + "inside GUE to its backends; set allow_gue_port_overlap = true if that is intended")
            }
        }
    }

    /// Each port that carries tunnels must fit the smallest packet a host may send (IPv6: 1280,
    /// IPv4: 576) plus the largest encapsulation overhead, or "too big" replies would carry an MTU
    /// hosts ignore (below IPv6's minimum) and the path black-holes.
    mutating func checkMTU(_ c: TernConfig) {
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
                    "port[\(i)].mtu",
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

    mutating func validateNode(_ raw: RawNode) -> NodeConfig {
        if raw.name.isEmpty { fail("node.name", "must not be empty") }
        var node = NodeConfig(name: raw.name)
        if let t = raw.tunnel_source_v4, let a = address(t, "node.tunnel_source_v4") {
            if a.isV6 { fail("node.tunnel_source_v4", "must be an IPv4 address, got \(a)") }
            node.tunnelSourceV4 = a
        }
        if let t = raw.tunnel_source_v6, let a = address(t, "node.tunnel_source_v6") {
            if !a.isV6 { fail("node.tunnel_source_v6", "must be an IPv6 address, got \(a)") }
            node.tunnelSourceV6 = a
        }
        return node
    }

    mutating func validatePorts(_ raw: [RawPort]) -> [PortConfig] {
        if raw.isEmpty { fail("port", "at least one [[port]] is needed") }
        var seen = Set<String>()
        return raw.enumerated().compactMap { i, p in
            let path = "port[\(i)]"
            if p.device.isEmpty { fail("\(path).device", "must not be empty") }
            if !seen.insert(p.device).inserted { fail("\(path).device", "duplicate device \"\(escapedForMessage(p.device))\"") }
            let gatewayMAC = p.gateway_mac.flatMap { mac($0, "\(path).gateway_mac") }
            let gateway = p.gateway.flatMap { address($0, "\(path).gateway") }
            if p.gateway_mac == nil && p.gateway == nil {
                fail(path, "needs gateway_mac (the next hop's MAC) or gateway (its address, resolved on host_interface)")
            }
            if p.gateway != nil && p.gateway_mac == nil && p.host_interface == nil {
                fail("\(path).gateway", "needs host_interface: the next hop is resolved through the host's neighbour table on it")
            }
            let own = p.mac.flatMap { mac($0, "\(path).mac") }
            note(ConfigSchema.portDevice, "\(path).device", p.device)
            note(ConfigSchema.portGatewayMAC, "\(path).gateway_mac", gatewayMAC?.description ?? p.gateway_mac ?? "learned")
            note(ConfigSchema.portGateway, "\(path).gateway", gateway?.description ?? p.gateway ?? "none")
            note(ConfigSchema.portMAC, "\(path).mac", own?.description ?? "the device's")
            let mtu = int(p.mtu, ConfigSchema.portMTU, at: "\(path).mtu")
            note(ConfigSchema.portBackendDevice, "\(path).backend_device", p.backend_device ?? "this port")
            note(ConfigSchema.portHostInterface, "\(path).host_interface", p.host_interface ?? "none")
            if let name = p.host_interface {
                if !Validator.isInterfaceName(name) {
                    fail(
                        "\(path).host_interface",
                        "must be 1 to 15 letters, digits, '.', '-' or '_' (a Linux interface name), got \"\(escapedForMessage(name))\""
                    )
                } else if let other = raw[..<i].firstIndex(where: { $0.host_interface == name }) {
                    fail("\(path).host_interface", "\"\(name)\" is already the host interface of port[\(other)]")
                }
            }
            if let b = p.backend_device, !raw.contains(where: { $0.device == b }) {
                fail("\(path).backend_device", "\"\(escapedForMessage(b))\" is not the device of any [[port]]")
            }
            note(ConfigSchema.portClampMSS, "\(path).clamp_mss", "\(p.clamp_mss ?? false)")
            let vlan = p.vlan.map { int($0, ConfigSchema.portVLAN, at: "\(path).vlan") }
            if vlan == nil { note(ConfigSchema.portVLAN, "\(path).vlan", "untagged") }
            return PortConfig(
                device: p.device, gatewayMAC: gatewayMAC, mac: own, mtu: mtu, backendDevice: p.backend_device,
                hostInterface: p.host_interface, gateway: gateway, clampMSS: p.clamp_mss ?? false, vlan: vlan)
        }
    }

    /// The valid VIPs and the key path of each (`vip[3]`: invalid ones are left out).
    mutating func validateVIPs(_ raw: [RawVIP], node: NodeConfig, tableSize: Int) -> ([VIPConfig], [String]) {
        var seen: [String: Int] = [:]
        var vips: [VIPConfig] = []
        var paths: [String] = []
        for (i, r) in raw.enumerated() {
            let path = r.origin ?? "vip[\(i)]"
            let (address, prefixLength) = vipAddress(r.address, "\(path).address")
            let port = int(r.port, ConfigSchema.vipPort, at: "\(path).port")
            var ipProtocol = IPProtocol.tcp
            switch r.protocol {
            case "tcp": ipProtocol = IPProtocol.tcp
            case "udp": ipProtocol = IPProtocol.udp
            default: fail("\(path).protocol", "must be \"tcp\" or \"udp\", got \"\(escapedForMessage(r.protocol))\"")
            }
            var encapsulation = Encapsulation.ipip
            var guePort: UInt16 = 0
            switch r.encap ?? "ipip" {
            case "ipip":
                if r.gue_port != nil { fail("\(path).gue_port", "only allowed with encap = \"gue\"") }
            case "gue":
                encapsulation = .gue
                if let g = r.gue_port {
                    guePort = UInt16(int(g, ConfigSchema.guePort, at: "\(path).gue_port"))
                } else {
                    fail("\(path).gue_port", "required with encap = \"gue\"")
                }
            default: fail("\(path).encap", "must be \"ipip\" or \"gue\", got \"\(escapedForMessage(r.encap ?? ""))\"")
            }
            let problemsBefore = problems.count
            let health = r.health.flatMap { validateHealth($0, path: "\(path).health", vipPort: port) }
            // A backend's own keys are checked over the VIP's only when those are sound (else
            // every backend would repeat the VIP's problems).
            let inherited = problems.count == problemsBefore ? r.health ?? RawHealth() : nil
            let backends = validateBackends(
                r.backend ?? [], path: path, node: node, tableSize: tableSize, health: (inherited, health), vipPort: port)
            guard let address else { continue }
            var vip = VIPConfig(
                address: address, port: UInt16(port), ipProtocol: ipProtocol, encapsulation: encapsulation,
                guePort: guePort, backends: backends, allowGUEPortOverlap: r.allow_gue_port_overlap ?? false)
            vip.prefixLength = prefixLength
            vip.quic = r.quic ?? false
            validateQUIC(vip, r, path: path)
            vip.clampMSS = r.clamp_mss ?? false
            if vip.clampMSS && vip.ipProtocol != IPProtocol.tcp {
                fail("\(path).clamp_mss", "MSS is a TCP option: needs protocol = \"tcp\"")
            }
            vip.health = health
            if let g = r.bgp { vip.bgp = validateBGP(g, path: "\(path).bgp") }
            vip.minHealthy = int(r.min_healthy, ConfigSchema.minHealthy, at: "\(path).min_healthy")
            if let h = r.hash {
                if let known = VIPConfig.hashNames.first(where: { $0.name == h }) {
                    vip.hashMode = known.mode
                } else {
                    let names = VIPConfig.hashNames.map { "\"\($0.name)\"" }.joined(separator: ", ")
                    fail("\(path).hash", "must be one of \(names), got \"\(escapedForMessage(h))\"")
                }
            }
            // Per address: a CIDR VIP's addresses may not be another VIP's (same port and protocol).
            for a in vip.addresses {
                let name = serviceName(address: a, port: vip.port, ipProtocol: vip.ipProtocol)
                if let first = seen[name] {
                    fail(path, "duplicate VIP \(name) (also vip[\(first)])")
                    break
                }
                seen[name] = i
            }
            vips.append(vip)
            paths.append(path)
        }
        return (vips, paths)
    }

    /// `[vip.health]`: nil when `check` is "none" or absent.
    mutating func validateHealth(_ h: RawHealth, path: String, vipPort: Int) -> HealthConfig? {
        typealias K = ConfigSchema
        let interval = int(h.interval_ms, K.healthInterval, at: "\(path).interval_ms")
        let timeout = int(h.timeout_ms, K.healthTimeout, at: "\(path).timeout_ms")
        if timeout > interval { fail("\(path).timeout_ms", "\(timeout) is longer than interval_ms (\(interval))") }
        let rise = int(h.rise, K.healthRise, at: "\(path).rise")
        let fall = int(h.fall, K.healthFall, at: "\(path).fall")
        let status = int(h.expect_status, K.healthExpectStatus, at: "\(path).expect_status")
        var keep = false
        switch h.all_down ?? "withdraw" {
        case "withdraw": break
        case "keep": keep = true
        default: fail("\(path).all_down", "must be \"withdraw\" or \"keep\", got \"\(escapedForMessage(h.all_down ?? ""))\"")
        }
        if let p = h.path, !p.hasPrefix("/") || p.utf8.contains(where: { $0 < 0x21 || $0 == 0x7F }) {
            fail("\(path).path", "must start with / and hold no spaces or control characters, got \"\(escapedForMessage(p))\"")
        }
        let checkName = h.check ?? "none"
        if checkName == "none" { return nil }
        guard let check = HealthConfig.Check(rawValue: checkName) else {
            fail("\(path).check", "must be \"tcp\", \"http\", \"dns\" or \"none\", got \"\(escapedForMessage(checkName))\"")
            return nil
        }
        let port = h.port.map { int($0, K.healthPort, at: "\(path).port") } ?? vipPort
        if port == 0 { fail("\(path).port", "required: the VIP has port 0 (every port)") }
        return HealthConfig(
            check: check, port: UInt16(max(0, min(port, 65535))), intervalMilliseconds: interval, timeoutMilliseconds: timeout,
            rise: rise, fall: fall, path: h.path ?? "/", expectStatus: status, keepWhenAllDown: keep)
    }

    /// `[vip.bgp]`: a MED and standard communities (`65000:100 65000:200`).
    mutating func validateBGP(_ g: RawBGP, path: String) -> BGPAttributes {
        var out = BGPAttributes()
        if let m = g.med { out.med = int(m, ConfigSchema.bgpMED, at: "\(path).med") }
        for c in (g.communities ?? "").split(separator: " ") {
            let parts = c.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ UInt16($0) != nil }) else {
                fail("\(path).communities", "\"\(escapedForMessage(String(c)))\" is not ASN:VALUE (0-65535 each)")
                continue
            }
            out.communities.append(String(c))
        }
        return out
    }

    /// `quic = true` only on UDP VIPs; `quic_server_id` only on their backends, once per VIP.
    mutating func validateQUIC(_ vip: VIPConfig, _ r: RawVIP, path: String) {
        if vip.quic && vip.ipProtocol != IPProtocol.udp { fail("\(path).quic", "QUIC runs over UDP: needs protocol = \"udp\"") }
        var seen: [Int: Int] = [:]
        for (j, b) in (r.backend ?? []).enumerated() {
            guard let id = b.quic_server_id else { continue }
            let bpath = "\(path).backend[\(j)].quic_server_id"
            if !vip.quic {
                fail(bpath, "only on backends of a VIP with quic = true")
            } else if let first = seen[id] {
                fail(bpath, "\(id) is also backend[\(first)]'s: a server id names one backend")
            }
            seen[id] = j
        }
    }

    /// `health`: the VIP's raw keys when sound (nil otherwise) and its validated check.
    mutating func validateBackends(
        _ raw: [RawBackend], path: String, node: NodeConfig, tableSize: Int, health: (raw: RawHealth?, check: HealthConfig?),
        vipPort: Int
    ) -> [BackendConfig] {
        if raw.isEmpty { fail("\(path).backend", "a VIP needs at least one [[vip.backend]]") }
        if raw.count > Validator.maxBackendsPerVIP {
            fail("\(path).backend", "\(raw.count) backends; at most \(Validator.maxBackendsPerVIP) per VIP")
        } else if raw.count >= tableSize {
            fail("\(path).backend", "\(raw.count) backends need a maglev.table_size above \(raw.count)")
        }
        var seen: [IPAddress: Int] = [:]
        var backends: [BackendConfig] = []
        for (j, b) in raw.enumerated() {
            let bpath = "\(path).backend[\(j)]"
            let weight = int(b.weight, ConfigSchema.backendWeight, at: "\(bpath).weight")
            var draining = false
            switch b.state ?? "active" {
            case "active": break
            case "draining": draining = true
            default:
                fail("\(bpath).state", "must be \"active\" or \"draining\", got \"\(escapedForMessage(b.state ?? ""))\"")
            }
            guard let a = address(b.address, "\(bpath).address") else { continue }
            if let first = seen[a] {
                fail("\(bpath).address", "duplicate backend \(a) (also backend[\(first)])")
            }
            seen[a] = j
            if a.isV6 && node.tunnelSourceV6 == nil {
                fail("\(bpath).address", "IPv6 backend \(a) needs node.tunnel_source_v6")
            }
            if !a.isV6 && node.tunnelSourceV4 == nil {
                fail("\(bpath).address", "IPv4 backend \(a) needs node.tunnel_source_v4")
            }
            var backend = BackendConfig(address: a, weight: weight, draining: draining, health: health.check)
            backend.quicServerID = b.quic_server_id.map {
                UInt32(int($0, ConfigSchema.backendQUICServerID, at: "\(bpath).quic_server_id"))
            }
            if let own = b.health, let inherited = health.raw {
                backend.health = validateHealth(inherited.overridden(by: own), path: "\(bpath).health", vipPort: vipPort)
            }
            backends.append(backend)
        }
        return backends
    }
}
