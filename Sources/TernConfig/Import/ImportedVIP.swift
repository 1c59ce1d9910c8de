// VIPs read from another load balancer's configuration (an `ipvsadm -S -n` dump, keepalived.conf)
// and what they become in Tern: `ternctl import` prints them as TOML, and `[import]` in Tern's own
// config reads them on every load (follow mode) through that same TOML, so both paths agree.

import TernBalancing
import TernWire

/// Where something was read: `keepalived.conf:12`.
public struct ImportSource: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    /// False for a file outside the directory of the file the import started from: messages about
    /// it never quote its content (an `include ../../etc/shadow` must not print the shadow file).
    public var quotable: Bool

    public init(file: String, line: Int, quotable: Bool = true) {
        self.file = file
        self.line = line
        self.quotable = quotable
    }

    public var description: String { "\(escapedForMessage(file)):\(line)" }
}

/// A warning (imported, with a difference said) or a refusal, at its source.
public struct ImportMessage: Sendable, Equatable, CustomStringConvertible {
    public var source: ImportSource
    public var message: String

    public init(_ source: ImportSource, _ message: String) {
        self.source = source
        self.message =
            source.quotable
            ? message
            : "not understood (the file is outside the directory the import started from: its content is not quoted; `ternctl import` on the file itself quotes it)"
    }

    public var description: String { "\(source): \(message)" }
}

/// What could not be imported; nothing is imported then.
public struct ImportError: Error, Sendable, Equatable, CustomStringConvertible {
    public var problems: [ImportMessage]

    public init(_ problems: [ImportMessage]) { self.problems = problems }

    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// A health check as the other tool describes it; unset fields take Tern's defaults.
public struct ImportedCheck: Sendable, Equatable {
    public var kind: HealthConfig.Check
    public var port: Int?
    public var path: String?
    public var expectStatus: Int?
    public var timeoutMilliseconds: Int?
    /// Failures in a row before down.
    public var fall: Int?

    public init(kind: HealthConfig.Check) { self.kind = kind }
}

public struct ImportedBackend: Sendable, Equatable {
    public var address: IPAddress
    public var weight: Int
    /// nil: not checked.
    public var check: ImportedCheck?
    public var source: ImportSource
    /// Imported with `state = "draining"` (its check could not be imported: it takes no new flows).
    public var draining = false

    public init(address: IPAddress, weight: Int, check: ImportedCheck? = nil, source: ImportSource) {
        self.address = address
        self.weight = weight
        self.check = check
        self.source = source
    }
}

public struct ImportedVIP: Sendable, Equatable {
    public var address: IPAddress
    public var port: UInt16
    /// "tcp" or "udp".
    public var protocolName: String
    /// nil: IPIP; else GUE to this port.
    public var guePort: UInt16?
    /// Time between checks of one backend.
    public var intervalMilliseconds: Int?
    public var minHealthy: Int?
    /// Persistence by client address: `hash = "source"`.
    public var persistent = false
    public var backends: [ImportedBackend] = []
    public var source: ImportSource
    /// What it was in the source: `virtual_server 192.0.2.10 80`, `-A -t 192.0.2.10:80`.
    public var origin: String

    public init(address: IPAddress, port: UInt16, protocolName: String, source: ImportSource, origin: String) {
        self.address = address
        self.port = port
        self.protocolName = protocolName
        self.source = source
        self.origin = origin
    }

    public var name: String {
        serviceName(address: address, port: port, ipProtocol: protocolName == "tcp" ? IPProtocol.tcp : IPProtocol.udp)
    }
}

public struct ImportResult: Sendable {
    public var vips: [ImportedVIP] = []
    /// Imported, but not exactly as the source meant (said with its line).
    public var warnings: [ImportMessage] = []
    /// With `skipRefused`: why each service left out was refused, by its name.
    public var refused: [(service: String, problem: ImportMessage)] = []

    public init() {}
}

/// Renders imported VIPs as `[[vip]]` tables of a Tern config.
public enum ImportRenderer {
    /// The TOML for `vips`, each VIP preceded by a comment naming its source; checks become
    /// `[vip.health]` (the first checked backend's) with `[vip.backend.health]` where a backend's
    /// check differs. Warnings about what could not be carried over go to `warnings`.
    public static func toml(_ vips: [ImportedVIP], warnings: inout [ImportMessage]) -> String {
        var out = ""
        for v in vips {
            out +=
                "# \(v.source): \(escapedForMessage(v.origin))\n[[vip]]\naddress = \(quoted(v.address.description))\nport = \(v.port)\n"
            out += "protocol = \(quoted(v.protocolName))\n"
            if let g = v.guePort { out += "encap = \"gue\"\ngue_port = \(g)\n" }
            if let m = v.minHealthy { out += "min_healthy = \(m)\n" }
            if v.persistent { out += "hash = \"source\"\n" }
            let shared = v.backends.compactMap(\.check).first
            if let c = shared {
                out += health(c, vip: v, warnings: &warnings)
            }
            for b in v.backends {
                out += "[[vip.backend]]\naddress = \(quoted(b.address.description))\nweight = \(b.weight)\n"
                if b.draining { out += "state = \"draining\"\n" }
                guard let shared, b.check != shared else { continue }
                guard let c = b.check else {
                    out += "[vip.backend.health]\ncheck = \"none\"\n"
                    continue
                }
                let timing = ImportMessage(
                    b.source,
                    "Tern times checks per VIP: this backend's timeout and retries are the VIP's first checked backend's")
                if (c.timeoutMilliseconds != shared.timeoutMilliseconds || c.fall != shared.fall) && !warnings.contains(timing) {
                    warnings.append(timing)  // once, though a group repeats the virtual_server
                }
                out += "[vip.backend.health]\ncheck = \(quoted(c.kind.rawValue))\n"
                if let p = c.port { out += "port = \(p)\n" }
                if let p = c.path { out += "path = \(quoted(p))\n" }
                if let s = c.expectStatus { out += "expect_status = \(s)\n" }
            }
            out += "\n"
        }
        return out
    }

    static func health(_ c: ImportedCheck, vip v: ImportedVIP, warnings: inout [ImportMessage]) -> String {
        typealias K = ConfigSchema
        let interval = min(
            max(v.intervalMilliseconds ?? K.healthInterval.defaultValue!, K.healthInterval.range!.lowerBound),
            K.healthInterval.range!.upperBound)
        var timeout = max(c.timeoutMilliseconds ?? K.healthTimeout.defaultValue!, K.healthTimeout.range!.lowerBound)
        if timeout > interval {
            warnings.append(
                ImportMessage(
                    v.source, "check timeout \(timeout) ms is longer than the interval (\(interval) ms): shortened to it"))
            timeout = interval
        }
        var text = "[vip.health]\ncheck = \(quoted(c.kind.rawValue))\n"
        if let p = c.port { text += "port = \(p)\n" }
        text += "interval_ms = \(interval)\ntimeout_ms = \(timeout)\nrise = 1\n"
        text += "fall = \(min(max(c.fall ?? 1, 1), K.healthFall.range!.upperBound))\n"
        if let p = c.path { text += "path = \(quoted(p))\n" }
        if let s = c.expectStatus { text += "expect_status = \(s)\n" }
        return text
    }

    /// A TOML basic string.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20 || u.value == 0x7F:
                let hex = String(u.value, radix: 16, uppercase: true)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
