// TOML text → validated `TernConfig`. TOMLKit decodes the document strictly (unknown keys are
// errors) into raw structs holding integers as `Int` (narrow types crash TOMLKit on overflow);
// `validate` then range-checks every value and reports every problem with its key path.

import Foundation
import TOMLKit
import TernBalancing
import TernWire

public enum ConfigLoader {
    /// Reads and validates a config file.
    public static func load(path: String) throws(ConfigError) -> TernConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, problems: [ConfigProblem("", "cannot read the file")])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, problems: [ConfigProblem("", "not UTF-8 text")])
        }
        return try parse(text, file: path)
    }

    /// Validates config text; `file` names it in errors.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> TernConfig {
        let raw: RawConfig
        var table: TOMLTable? = nil
        do {
            table = try TOMLTable(string: text)
            raw = try TOMLDecoder(strictDecoding: true).decode(RawConfig.self, from: table!)
        } catch let error as TOMLParseError {
            throw ConfigError(
                file: file, line: error.source.begin.line, column: error.source.begin.column,
                problems: [ConfigProblem("", error.description)])
        } catch let error as UnexpectedKeysError {
            let problems = error.keys.values.map { ConfigProblem(keyPath($0), "unknown key") }
            throw ConfigError(file: file, problems: problems.sorted { $0.keyPath < $1.keyPath })
        } catch let error as DecodingError {
            throw ConfigError(file: file, problems: [problem(from: error, in: table)])
        } catch {
            throw ConfigError(file: file, problems: [ConfigProblem("", "\(error)")])
        }
        var v = Validator()
        let config = v.validate(raw)
        guard let config, v.problems.isEmpty else { throw ConfigError(file: file, problems: v.problems) }
        return config
    }

    /// `vip[1].backend[0].weight` from a coding path.
    static func keyPath(_ path: [any CodingKey]) -> String {
        var out = ""
        for key in path {
            if let i = key.intValue {
                out += "[\(i)]"
            } else {
                out += (out.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return out
    }

    /// The value at a coding path in the parsed document.
    static func value(at path: [any CodingKey], in table: TOMLTable?) -> (any TOMLValueConvertible)? {
        var current: (any TOMLValueConvertible)? = table
        for key in path {
            if let i = key.intValue {
                guard let array = current?.array, i < array.count else { return nil }
                current = array[i]
            } else {
                current = current?.table?[key.stringValue]
            }
        }
        return current
    }

    /// TOMLKit reports a value of the wrong type as a missing key; the document tells them apart.
    static func problem(from error: DecodingError, in table: TOMLTable?) -> ConfigProblem {
        switch error {
        case .typeMismatch(let type, let c):
            return ConfigProblem(keyPath(c.codingPath), "wrong type: expected \(typeName(type))")
        case .valueNotFound(let type, let c):
            return ConfigProblem(keyPath(c.codingPath), "missing value: expected \(typeName(type))")
        case .keyNotFound(let key, let c):
            var path = c.codingPath
            if path.last?.stringValue != key.stringValue || path.last?.intValue != key.intValue { path.append(key) }
            if let found = value(at: path, in: table) {
                return ConfigProblem(keyPath(path), "wrong type: got \(found.type), expected \(expected(for: key.stringValue))")
            }
            return ConfigProblem(keyPath(path), "required key is missing")
        case .dataCorrupted(let c):
            return ConfigProblem(keyPath(c.codingPath), c.debugDescription)
        @unknown default:
            return ConfigProblem("", "\(error)")
        }
    }

    static let integerKeys: Set<String> = [
        "workers", "burst_size", "flow_table_entries", "tcp_idle_timeout_s", "udp_idle_timeout_s", "mtu", "table_size",
        "port", "gue_port", "weight",
    ]
    static let tableKeys: Set<String> = ["node", "dataplane", "maglev"]
    static let arrayKeys: Set<String> = ["port", "vip", "backend"]

    static func expected(for key: String) -> String {
        if integerKeys.contains(key) { return "integer" }
        if tableKeys.contains(key) { return "table" }
        return "string"
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type: "an integer"
        case is String.Type: "a string"
        default: "\(type)".contains("Array") ? "an array of tables" : "a table"
        }
    }
}

// The document as TOMLKit decodes it: optional where a default exists.
struct RawConfig: Decodable {
    var node: RawNode
    var dataplane: RawDataplane?
    var port: [RawPort]
    var maglev: RawMaglev?
    var vip: [RawVIP]?
}

struct RawNode: Decodable {
    var name: String
    var tunnel_source_v4: String?
    var tunnel_source_v6: String?
}

struct RawDataplane: Decodable {
    var workers: Int?
    var burst_size: Int?
    var flow_table_entries: Int?
    var tcp_idle_timeout_s: Int?
    var udp_idle_timeout_s: Int?
}

struct RawPort: Decodable {
    var device: String
    var gateway_mac: String
    var mac: String?
    var mtu: Int?
    var backend_device: String?
}

struct RawMaglev: Decodable {
    var table_size: Int?
}

struct RawVIP: Decodable {
    var address: String
    var port: Int
    var `protocol`: String
    var encap: String?
    var gue_port: Int?
    var backend: [RawBackend]?
}

struct RawBackend: Decodable {
    var address: String
    var weight: Int?
}

/// Range and consistency checks; collects every problem instead of stopping at the first.
struct Validator {
    var problems: [ConfigProblem] = []

    static let limits = (
        workers: 1...64, burstSize: 1...512, flowTableEntries: 1024...(1 << 28), idleTimeout: 1...86_400,
        mtu: 1280...9216, tableSize: 7...10_000_019, weight: 0...65535, port: 0...65535, guePort: 1...65535
    )

    mutating func fail(_ path: String, _ message: String) { problems.append(ConfigProblem(path, message)) }

    mutating func int(_ value: Int?, _ path: String, _ range: ClosedRange<Int>, default d: Int) -> Int {
        guard let value else { return d }
        guard range.contains(value) else {
            fail(path, "must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
            return d
        }
        return value
    }

    /// Every address in the config is a VIP, a backend or a tunnel source: all must be unicast.
    mutating func address(_ text: String, _ path: String) -> IPAddress? {
        guard let a = IPAddress(text) else {
            fail(path, "not an IPv4 or IPv6 address: \"\(text)\"")
            return nil
        }
        if let reason = a.notUnicastReason {
            fail(path, "must be a unicast address; \(a) is \(reason)")
        }
        return a
    }

    mutating func mac(_ text: String, _ path: String) -> MACAddress? {
        guard let m = MACAddress(text) else {
            fail(path, "not a MAC address (aa:bb:cc:dd:ee:ff): \"\(text)\"")
            return nil
        }
        if let reason = m.notUnicastReason {
            fail(path, "must be a unicast MAC address; \(m) is \(reason)")
        }
        return m
    }

    mutating func validate(_ raw: RawConfig) -> TernConfig? {
        let node = validateNode(raw.node)
        var dataplane = DataplaneConfig()
        if let d = raw.dataplane {
            let l = Validator.limits
            dataplane.workers = int(d.workers, "dataplane.workers", l.workers, default: 1)
            dataplane.burstSize = int(d.burst_size, "dataplane.burst_size", l.burstSize, default: 32)
            dataplane.flowTableEntries = int(
                d.flow_table_entries, "dataplane.flow_table_entries", l.flowTableEntries, default: 1_048_576)
            dataplane.tcpIdleTimeoutSeconds = int(
                d.tcp_idle_timeout_s, "dataplane.tcp_idle_timeout_s", l.idleTimeout, default: 300)
            dataplane.udpIdleTimeoutSeconds = int(
                d.udp_idle_timeout_s, "dataplane.udp_idle_timeout_s", l.idleTimeout, default: 30)
        }
        let ports = validatePorts(raw.port)
        let tableSize = int(raw.maglev?.table_size, "maglev.table_size", Validator.limits.tableSize, default: 65537)
        if !Maglev.isPrime(tableSize) { fail("maglev.table_size", "must be prime, got \(tableSize)") }
        let vips = validateVIPs(raw.vip ?? [], node: node, tableSize: tableSize)
        guard problems.isEmpty else { return nil }
        return TernConfig(node: node, dataplane: dataplane, ports: ports, tableSize: tableSize, vips: vips)
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
            if !seen.insert(p.device).inserted { fail("\(path).device", "duplicate device \"\(p.device)\"") }
            let gateway = mac(p.gateway_mac, "\(path).gateway_mac")
            let own = p.mac.flatMap { mac($0, "\(path).mac") }
            let mtu = int(p.mtu, "\(path).mtu", Validator.limits.mtu, default: 1500)
            if let b = p.backend_device, !raw.contains(where: { $0.device == b }) {
                fail("\(path).backend_device", "\"\(b)\" is not the device of any [[port]]")
            }
            guard let gateway else { return nil }
            return PortConfig(device: p.device, gatewayMAC: gateway, mac: own, mtu: mtu, backendDevice: p.backend_device)
        }
    }

    mutating func validateVIPs(_ raw: [RawVIP], node: NodeConfig, tableSize: Int) -> [VIPConfig] {
        var seen: [String: Int] = [:]
        var vips: [VIPConfig] = []
        for (i, r) in raw.enumerated() {
            let path = "vip[\(i)]"
            let address = address(r.address, "\(path).address")
            let port = int(r.port, "\(path).port", Validator.limits.port, default: 0)
            var ipProtocol = IPProtocol.tcp
            switch r.protocol {
            case "tcp": ipProtocol = IPProtocol.tcp
            case "udp": ipProtocol = IPProtocol.udp
            default: fail("\(path).protocol", "must be \"tcp\" or \"udp\", got \"\(r.protocol)\"")
            }
            var encapsulation = Encapsulation.ipip
            var guePort: UInt16 = 0
            switch r.encap ?? "ipip" {
            case "ipip":
                if r.gue_port != nil { fail("\(path).gue_port", "only allowed with encap = \"gue\"") }
            case "gue":
                encapsulation = .gue
                if let g = r.gue_port {
                    guePort = UInt16(int(g, "\(path).gue_port", Validator.limits.guePort, default: 1))
                } else {
                    fail("\(path).gue_port", "required with encap = \"gue\"")
                }
            default: fail("\(path).encap", "must be \"ipip\" or \"gue\", got \"\(r.encap ?? "")\"")
            }
            let backends = validateBackends(r.backend ?? [], path: path, node: node, tableSize: tableSize)
            guard let address else { continue }
            let vip = VIPConfig(
                address: address, port: UInt16(port), ipProtocol: ipProtocol, encapsulation: encapsulation,
                guePort: guePort, backends: backends)
            if let first = seen[vip.name] {
                fail(path, "duplicate VIP \(vip.name) (also vip[\(first)])")
            } else {
                seen[vip.name] = i
            }
            vips.append(vip)
        }
        return vips
    }

    mutating func validateBackends(_ raw: [RawBackend], path: String, node: NodeConfig, tableSize: Int) -> [BackendConfig] {
        if raw.isEmpty { fail("\(path).backend", "a VIP needs at least one [[vip.backend]]") }
        if raw.count >= tableSize {
            fail("\(path).backend", "\(raw.count) backends need a maglev.table_size above \(raw.count)")
        }
        var seen: [IPAddress: Int] = [:]
        var backends: [BackendConfig] = []
        for (j, b) in raw.enumerated() {
            let bpath = "\(path).backend[\(j)]"
            let weight = int(b.weight, "\(bpath).weight", Validator.limits.weight, default: 100)
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
            backends.append(BackendConfig(address: a, weight: weight))
        }
        return backends
    }
}
