// The control socket's protocol, shared by ternd and ternctl: a client sends one request line (a
// JSON object: `command` and string arguments), ternd answers one reply line (a JSON object with
// `ok`, and `error` when not ok), then closes. Commands are `ControlCommand`; each reply is a Codable
// struct below whose coding keys are the wire names, so both sides use one definition and a renamed
// field fails to compile instead of reading `?? "?"`. `status` carries `protocol`
// (`ControlProtocol.version`): raise it when a reply changes incompatibly.
//
//   status                      version, uptime, config file and generation, workers, ports, last reload
//   stats                       every counter, live (LiveStats): the final JSON line's keys, and `time`
//   reload                      re-read the config file; ok, or the error (the running config stays)
//   drain   backend= [vip=]     weight 0 for that backend (of every VIP that has it, or of `vip`)
//   undrain backend= [vip=]     back to the config's weight
//   show-backends [vip=]        per VIP: each backend's weight, state, Maglev slots and share, packets, new flows
//   show-vips                   per VIP: backends, table size and fingerprint, encapsulation, packets, new flows
//   announcements               each VIP prefix and whether this node should announce it (BGP feed)

import Foundation
import TernConfig
import TernWire

public enum ControlProtocol {
    /// The reply format's version, in `status` as `protocol`.
    public static let version = 1
}

public struct ControlFailure: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

/// A request ternd understands.
public enum ControlCommand: Equatable, Sendable {
    case status
    case stats
    case reload
    case drain(backend: IPAddress, vip: String?)
    case undrain(backend: IPAddress, vip: String?)
    case showBackends(vip: String?)
    case showVIPs
    case announcements
    case capture(CaptureRequest)
    case captureStatus
    case captureStop

    /// Every command's wire name, in the order errors list them.
    public static let names = [
        "status", "stats", "reload", "drain", "undrain", "show-backends", "show-vips", "announcements", "capture",
        "capture-status", "capture-stop",
    ]

    public var name: String {
        switch self {
        case .status: "status"
        case .stats: "stats"
        case .reload: "reload"
        case .drain: "drain"
        case .undrain: "undrain"
        case .showBackends: "show-backends"
        case .showVIPs: "show-vips"
        case .announcements: "announcements"
        case .capture: "capture"
        case .captureStatus: "capture-status"
        case .captureStop: "capture-stop"
        }
    }

    /// Asks without changing anything: clients asking the same in one turn can share a reply.
    public var readOnly: Bool {
        switch self {
        case .reload, .drain, .undrain, .capture, .captureStop: false
        default: true
        }
    }

    public var arguments: [String: String] {
        switch self {
        case .drain(let backend, let vip), .undrain(let backend, let vip):
            ["backend": backend.description].merging(vip.map { ["vip": $0] } ?? [:]) { a, _ in a }
        case .showBackends(let vip): vip.map { ["vip": $0] } ?? [:]
        case .capture(let r): r.arguments
        default: [:]
        }
    }

    /// A command from its wire name and arguments (arguments a command does not take are ignored).
    public init(name: String, arguments: [String: String]) throws(ControlFailure) {
        switch name {
        case "status": self = .status
        case "stats": self = .stats
        case "reload": self = .reload
        case "drain", "undrain":
            guard let text = arguments["backend"], let backend = IPAddress(text) else {
                throw ControlFailure("\(name) needs backend=ADDRESS")
            }
            self =
                name == "drain"
                ? .drain(backend: backend, vip: arguments["vip"]) : .undrain(backend: backend, vip: arguments["vip"])
        case "show-backends": self = .showBackends(vip: arguments["vip"])
        case "show-vips": self = .showVIPs
        case "announcements": self = .announcements
        case "capture": self = .capture(try CaptureRequest(arguments: arguments))
        case "capture-status": self = .captureStatus
        case "capture-stop": self = .captureStop
        default:
            throw ControlFailure(
                "unknown command \"\(escapedForMessage(name))\" (\(ControlCommand.names.joined(separator: ", ")))")
        }
    }

    /// Parses a request line: a JSON object with a string `command` and string arguments.
    public init(line: [UInt8]) throws(ControlFailure) {
        guard let object = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line)) else {
            throw ControlFailure("the request is not a JSON object")
        }
        guard case .string(let name)? = object["command"] else { throw ControlFailure("the request has no \"command\"") }
        var arguments: [String: String] = [:]
        for (k, v) in object where k != "command" {
            guard case .string(let s) = v else { throw ControlFailure("argument \"\(k)\" must be a string") }
            arguments[k] = s
        }
        try self.init(name: name, arguments: arguments)
    }

    /// The line a client sends.
    public var line: [UInt8] {
        var object = arguments
        object["command"] = name
        return ControlWire.encode(object)
    }
}

/// A JSON value of any shape: requests before they are checked, and `stats`, whose keys follow
/// the counters (TernTelemetry's report) rather than a fixed struct.
public enum JSONValue: Codable, Equatable, Sendable {
    case null
    case bool(Bool)
    case integer(Int64)
    case unsigned(UInt64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int64.self) {
            self = .integer(i)
        } else if let u = try? c.decode(UInt64.self) {
            self = .unsigned(u)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .integer(let i): try c.encode(i)
        case .unsigned(let u): try c.encode(u)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// A number as a Double (0 for anything else): rates and sums.
    public var number: Double {
        switch self {
        case .integer(let i): Double(i)
        case .unsigned(let u): Double(u)
        case .double(let d): d
        default: 0
        }
    }

    public var object: [String: JSONValue] { if case .object(let o) = self { o } else { [:] } }
}

extension JSONValue: CustomStringConvertible {
    /// As JSON writes it (strings without quotes): what `ternctl stats` prints.
    public var description: String {
        switch self {
        case .null: "null"
        case .bool(let b): "\(b)"
        case .integer(let i): "\(i)"
        case .unsigned(let u): "\(u)"
        case .double(let d): "\(d)"
        case .string(let s): s
        case .array, .object: String(decoding: ControlWire.encode(self).dropLast(), as: UTF8.self)
        }
    }
}

/// One encoding for every line on the socket: sorted keys, slashes as they are, a newline.
public enum ControlWire {
    public static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else {
            return Array("{\"error\":\"reply not encodable\",\"ok\":false}\n".utf8)
        }
        return Array(data) + [0x0A]
    }

    public static func decode<T: Decodable>(_ type: T.Type, from line: [UInt8]) throws(ControlFailure) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(line))
        } catch {
            throw ControlFailure("a reply ternctl cannot read (\(line.count) bytes): \(error)")
        }
    }
}

// MARK: replies

/// What every reply has: whether the command succeeded and, if not, why.
public struct ReplyHeader: Codable, Sendable, Equatable {
    public var ok: Bool
    public var error: String?
}

/// A refused or failed command.
public struct ErrorReply: Codable, Sendable, Equatable {
    public var ok = false
    public var error: String
    public init(_ error: String) { self.error = error }
}

/// reload, drain, undrain: what was done.
public struct MessageReply: Codable, Sendable, Equatable {
    public var ok = true
    public var message: String
    public init(_ message: String) { self.message = message }
}

public struct PortStatus: Codable, Sendable, Equatable {
    public var name: String
    public var linkUp: Bool
    public var speedMbps: Int
    /// DPDK's counters of the port (`ipackets`, `opackets`, ...).
    public var stats: [String: UInt64]

    enum CodingKeys: String, CodingKey {
        case name, stats
        case linkUp = "link_up"
        case speedMbps = "speed_mbps"
    }

    public init(name: String, linkUp: Bool, speedMbps: Int, stats: [String: UInt64]) {
        self.name = name
        self.linkUp = linkUp
        self.speedMbps = speedMbps
        self.stats = stats
    }
}

/// A next hop learned from the kernel's neighbour table (`[[port]] gateway`).
public struct GatewayStatus: Codable, Sendable, Equatable {
    /// Index in `[[port]]`.
    public var port: Int
    public var gateway: String
    public var interface: String
    /// "" while unknown (the port drops `no_neighbor`).
    public var mac: String
    /// The kernel's neighbour state.
    public var state: String
}

public struct ReloadCounts: Codable, Sendable, Equatable {
    public var ok: UInt64
    public var failed: UInt64
}

public struct LastReload: Codable, Sendable, Equatable {
    public var time: Double
    public var ok: Bool
    public var message: String
}

public struct StatusReply: Codable, Sendable, Equatable {
    public var ok = true
    public var protocolVersion = ControlProtocol.version
    public var version: String
    public var uptimeSeconds: Int
    public var config: String
    public var generation: Int
    public var workers: Int
    public var ports: [PortStatus]
    public var reloads: ReloadCounts
    public var summary: String
    /// Per VIP name, its running table's fingerprint (16 hex digits).
    public var tableFingerprints: [String: String]
    public var gateways: [GatewayStatus]
    public var lastReload: LastReload?
    /// The VIPs this node asks the BGP feed to announce now, by name (`tern_vip_announced`).
    public var announced: [String]
    /// With `[fleet]`: the site revision running and whether etcd answers.
    public var fleet: FleetState?

    enum CodingKeys: String, CodingKey {
        case ok, version, config, generation, workers, ports, reloads, summary, gateways, announced, fleet
        case protocolVersion = "protocol"
        case uptimeSeconds = "uptime_s"
        case tableFingerprints = "table_fingerprints"
        case lastReload = "last_reload"
    }
}

/// A fleet node's standing (`status`, metrics).
public struct FleetState: Codable, Sendable, Equatable {
    public var revision: Int64
    public var reachable: Bool
    /// etcd's last error while unreachable; why the newest document was refused.
    public var error: String
    public var refused: String
}

/// Every counter (the keys of ternd's final JSON line) and `time`, when they were read.
public struct StatsReply: Codable, Sendable, Equatable {
    public var counters: [String: JSONValue]
    public var time: Double

    public init(counters: [String: JSONValue], time: Double) {
        self.counters = counters
        self.time = time
    }

    public init(from decoder: any Decoder) throws {
        var all = try [String: JSONValue](from: decoder)
        time = all.removeValue(forKey: "time")?.number ?? 0
        all["ok"] = nil
        counters = all
    }

    public func encode(to encoder: any Encoder) throws {
        var all = counters
        all["ok"] = .bool(true)
        all["time"] = .double(time)
        try all.encode(to: encoder)
    }

    public subscript(_ key: String) -> JSONValue? { counters[key] }
}

public struct BackendRow: Codable, Sendable, Equatable {
    public var address: String
    public var weight: Int
    /// The weight in the running table (0: drained, down or not placed).
    public var effectiveWeight: Int
    public var state: String
    public var slots: Int
    public var share: Double
    public var packets: UInt64
    public var newFlows: UInt64
    /// IP bytes of the clients' packets forwarded.
    public var bytes: UInt64
    public var health: String

    enum CodingKeys: String, CodingKey {
        case address, weight, state, slots, share, packets, bytes, health
        case effectiveWeight = "effective_weight"
        case newFlows = "new_flows"
    }
}

public struct VIPBackends: Codable, Sendable, Equatable {
    public var vip: String
    public var backends: [BackendRow]
}

public struct BackendsReply: Codable, Sendable, Equatable {
    public var ok = true
    public var vips: [VIPBackends]
}

public struct VIPRow: Codable, Sendable, Equatable {
    public var vip: String
    public var address: String
    public var prefix: String
    public var port: Int
    public var `protocol`: String
    public var encap: String
    public var guePort: Int
    public var backends: Int
    public var hash: String
    public var quic: Bool
    public var clampMSS: Bool
    public var backendsTakingNewFlows: Int
    public var tableSize: Int
    public var fingerprint: String
    public var packets: UInt64
    public var newFlows: UInt64
    /// IP bytes of the clients' packets forwarded.
    public var bytes: UInt64
    /// Whether ternd asks the BGP feed to announce the VIP's prefix now (enough live backends, not
    /// shutting down): what a speaker fed by `bgp-feed` announces.
    public var announced: Bool

    enum CodingKeys: String, CodingKey {
        case vip, address, prefix, port, `protocol`, encap, backends, hash, quic, fingerprint, packets, bytes, announced
        case guePort = "gue_port"
        case clampMSS = "clamp_mss"
        case backendsTakingNewFlows = "backends_taking_new_flows"
        case tableSize = "table_size"
        case newFlows = "new_flows"
    }
}

public struct VIPsReply: Codable, Sendable, Equatable {
    public var ok = true
    public var vips: [VIPRow]
    public var generation: Int
}

public struct PrefixAnnouncement: Codable, Sendable, Equatable {
    public var prefix: String
    /// Whether this node should announce it now.
    public var up: Bool
    public var communities: [String]
    public var med: Int?
}

public struct AnnouncementsReply: Codable, Sendable, Equatable {
    public var ok = true
    public var prefixes: [PrefixAnnouncement]
}

/// ternd's answer to one command, typed; `line` is what goes on the socket.
public enum ControlResponse: Sendable, Equatable {
    case status(StatusReply)
    case stats(StatsReply)
    case message(MessageReply)
    case backends(BackendsReply)
    case vips(VIPsReply)
    case announcements(AnnouncementsReply)
    case capture(CaptureStatus)
    case error(ErrorReply)

    public static func failure(_ message: String) -> ControlResponse { .error(ErrorReply(message)) }

    public var line: [UInt8] {
        switch self {
        case .status(let r): ControlWire.encode(r)
        case .stats(let r): ControlWire.encode(r)
        case .message(let r): ControlWire.encode(r)
        case .backends(let r): ControlWire.encode(r)
        case .vips(let r): ControlWire.encode(r)
        case .announcements(let r): ControlWire.encode(r)
        case .capture(let r): ControlWire.encode(r)
        case .error(let r): ControlWire.encode(r)
        }
    }
}
