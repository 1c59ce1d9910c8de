// The `ipvsadm -S -n` (ipvsadm-save) format, both ways. Read: `-A` adds a service (`-t|-u
// ADDR:PORT -s SCHED [-p [T]] [-b FLAGS]`), `-a` a real server of it (`-r ADDR[:PORT] -i|-g|-m
// [-w N] [--tun-type ipip|gue --tun-port N]`); IPv6 addresses in brackets; long option names too.
// Tern tunnels (IPIP or GUE) and hashes with Maglev: direct routing (-g, ipvsadm's default) and
// NAT (-m), fwmark and SCTP services are refused; other schedulers become Maglev with a warning.
// Written: the same format with scheduler `mh` and tunnel forwarding (`ipvsadm -R` restores it).

import TernBalancing
import TernWire

public enum IPVSAdm {
    /// Services and real servers of an ipvsadm-save dump; refusals throw, all together.
    /// `quotable`: whether messages may quote the file (false for one outside the config's directory).
    /// With `skipRefused`, a service with a problem (on its -A line or one of its -a lines) is left
    /// out (`result.refused` says why) instead of failing the import; a line that names no service
    /// still fails it.
    public static func parse(
        _ text: String, file: String, quotable: Bool = true, skipRefused: Bool = false
    ) throws(ImportError) -> ImportResult {
        var result = ImportResult()
        var problems: [(service: String?, problem: ImportMessage)] = []
        var index: [String: Int] = [:]  // VIP name to its position in result.vips
        var tunnels: [String: (guePort: UInt16?, line: Int)] = [:]
        var refusedServers = Set<String>()  // services whose real servers were refused (each reported on its line)
        for (n, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let source = ImportSource(file: file, line: n + 1, quotable: quotable)
            let line = trimmed(rawLine)
            if line.isEmpty || line.hasPrefix("#") { continue }
            var words = ArraySlice(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init))
            var lineService: String? = nil
            func fail(_ message: String) { problems.append((lineService, ImportMessage(source, message))) }
            guard let command = words.popFirst() else { continue }
            var options: [String: String] = [:]
            var flags: Set<String> = []
            var bad = false
            while let word = words.popFirst() {
                guard let name = optionNames[word] else {
                    fail("unknown option \"\(escapedForMessage(word))\"")
                    bad = true
                    break
                }
                switch name {
                case "persistent":  // takes an optional timeout
                    if let next = words.first, Int(next) != nil { options[name] = words.popFirst() } else { options[name] = "" }
                case _ where valueOptions.contains(name):
                    guard let value = words.popFirst() else {
                        fail("\(word) needs a value")
                        bad = true
                        break
                    }
                    options[name] = value
                default: flags.insert(name)
                }
            }
            if bad { continue }
            if flags.contains("fwmark") || options["fwmark"] != nil {
                lineService = "fwmark \(options["fwmark"] ?? "")"
                fail("fwmark services are refused: Tern matches VIPs by address, port and protocol, not by firewall mark")
                continue
            }
            if let sctp = options["sctp"] {
                lineService = "sctp \(sctp)"
                fail("SCTP services are refused: Tern balances TCP and UDP")
                continue
            }
            let proto = options["tcp"] != nil ? "tcp" : "udp"
            guard let serviceText = options["tcp"] ?? options["udp"] else {
                fail("no service (-t ADDR:PORT or -u ADDR:PORT)")
                continue
            }
            guard let (address, port) = hostPort(serviceText), let port else {
                fail("\"\(escapedForMessage(serviceText))\" is not ADDR:PORT (IPv6 in brackets)")
                continue
            }
            let name = serviceName(address: address, port: port, ipProtocol: proto == "tcp" ? IPProtocol.tcp : IPProtocol.udp)
            lineService = name
            switch command {
            case "-A", "--add-service":
                if index[name] != nil {
                    fail("service \(name) added twice")
                    continue
                }
                let scheduler = options["scheduler"] ?? "wlc"
                if scheduler != "mh" {
                    result.warnings.append(
                        ImportMessage(
                            source,
                            "scheduler \"\(escapedForMessage(scheduler))\" becomes Maglev (Tern's only scheduler; IPVS calls it mh)"
                        ))
                }
                var vip = ImportedVIP(address: address, port: port, protocolName: proto, source: source, origin: line)
                if options["persistent"] != nil {
                    vip.persistent = true
                    result.warnings.append(
                        ImportMessage(
                            source,
                            "persistence (-p) becomes hash = \"source\": a client's connections go to one backend as long as the backends stay (no timeout)"
                        ))
                }
                if let flags = options["sched-flags"] {
                    result.warnings.append(
                        ImportMessage(
                            source,
                            "scheduler flags (-b \(escapedForMessage(flags))) are not imported: Maglev over the 5-tuple takes none (hash = \"source\" is Tern's source hashing)"
                        ))
                }
                index[name] = result.vips.count
                result.vips.append(vip)
            case "-a", "--add-server":
                guard let i = index[name] else {
                    fail("real server of \(name), which no earlier -A adds")
                    continue
                }
                // A refused real server is reported once: not again as a service without one.
                refusedServers.insert(name)
                if flags.contains("gatewaying") || !(flags.contains("ipip") || flags.contains("masquerading")) {
                    fail(
                        "direct routing (-g, ipvsadm's default) is refused: Tern tunnels to backends (-i) and does not rewrite MACs on a shared layer 2"
                    )
                    continue
                }
                if flags.contains("masquerading") {
                    fail(
                        "NAT (-m) is refused: Tern's backends answer clients directly (DSR), so there is no return path to translate"
                    )
                    continue
                }
                guard let realText = options["real-server"], let (real, realPort) = hostPort(realText) else {
                    fail("-r needs a real server address (ADDR or ADDR:PORT)")
                    continue
                }
                if let realPort, realPort != port {
                    result.warnings.append(
                        ImportMessage(
                            source,
                            "real server port \(realPort) differs from the service's \(port): tunnels keep the client's port (as IPVS does)"
                        ))
                }
                let weightText = options["weight"] ?? "1"
                guard let weight = Int(weightText), (0...65535).contains(weight) else {
                    fail("weight \"\(escapedForMessage(weightText))\": Tern weights are 0-65535")
                    continue
                }
                var guePort: UInt16?
                switch options["tun-type"] ?? "ipip" {
                case "ipip": break
                case "gue":
                    guard let p = options["tun-port"].flatMap(UInt16.init), p > 0 else {
                        fail("--tun-type gue needs --tun-port 1-65535")
                        continue
                    }
                    guePort = p
                case let other:
                    fail("tunnel type \"\(escapedForMessage(other))\" is refused: Tern encapsulates in IPIP or GUE")
                    continue
                }
                if let earlier = tunnels[name], earlier.guePort != guePort {
                    fail(
                        "tunnel differs from the real server on line \(earlier.line): Tern encapsulates all of a VIP's backends alike"
                    )
                    continue
                }
                tunnels[name] = (guePort, n + 1)
                refusedServers.remove(name)
                result.vips[i].guePort = guePort
                result.vips[i].backends.append(ImportedBackend(address: real, weight: weight, source: source))
            default:
                fail("\"\(escapedForMessage(command))\" is not -A or -a (an ipvsadm-save line)")
            }
        }
        for v in result.vips where v.backends.isEmpty && !refusedServers.contains(v.name) {
            problems.append((v.name, ImportMessage(v.source, "service \(v.name) has no real server (-a)")))
        }
        if skipRefused && problems.allSatisfy({ $0.service != nil }) {
            let refused = Set(problems.compactMap(\.service))
            result.refused = problems.map { ($0.service!, $0.problem) }
            result.vips.removeAll { refused.contains($0.name) }
            return result
        }
        guard problems.isEmpty else { throw ImportError(problems.map(\.problem)) }
        return result
    }

    /// One VIP as `ipvsadm -R` takes it back.
    public struct Service: Sendable, Equatable {
        public var address: IPAddress
        public var port: UInt16
        public var protocolName: String
        public var guePort: UInt16?
        /// `hash = "source"`: written as IPVS persistence (-p, its default 300 s timeout).
        public var persistent: Bool
        public var backends: [(address: IPAddress, weight: Int)]

        public init(
            address: IPAddress, port: UInt16, protocolName: String, guePort: UInt16?, persistent: Bool = false,
            backends: [(address: IPAddress, weight: Int)]
        ) {
            self.address = address
            self.port = port
            self.protocolName = protocolName
            self.guePort = guePort
            self.persistent = persistent
            self.backends = backends
        }

        public static func == (a: Service, b: Service) -> Bool {
            a.address == b.address && a.port == b.port && a.protocolName == b.protocolName && a.guePort == b.guePort
                && a.persistent == b.persistent
                && a.backends.map(\.address) == b.backends.map(\.address) && a.backends.map(\.weight) == b.backends.map(\.weight)
        }
    }

    /// The ipvsadm-save lines for `services`: scheduler mh, tunnel forwarding, the backend's weight
    /// (0: quiescent, as a drain). A `hash = "source"` VIP is written persistent (-p, 300 s). IPVS
    /// allows port 0 only for persistent services, so any other port-0 VIP is written persistent
    /// with the shortest timeout (1 s).
    public static func save(_ services: [Service]) -> String {
        var out = ""
        for s in services {
            let service = "-\(s.protocolName == "tcp" ? "t" : "u") \(hostPort(s.address, s.port))"
            out += "-A \(service) -s mh\(s.persistent ? " -p" : s.port == 0 ? " -p 1" : "")\n"
            let tunnel = s.guePort.map { " --tun-type gue --tun-port \($0)" } ?? ""
            for b in s.backends {
                out += "-a \(service) -r \(hostPort(b.address, s.port)) -i -w \(b.weight)\(tunnel)\n"
            }
        }
        return out
    }

    /// Without leading and trailing spaces, tabs and carriage returns.
    static func trimmed(_ s: Substring) -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = s.firstIndex(where: { !blank($0) }), let last = s.lastIndex(where: { !blank($0) }) else { return "" }
        return String(s[first...last])
    }

    static func hostPort(_ a: IPAddress, _ port: UInt16) -> String { a.isV6 ? "[\(a)]:\(port)" : "\(a):\(port)" }

    /// `192.0.2.1:80`, `[2001:db8::1]:80`, or an address alone (port nil).
    static func hostPort(_ text: String) -> (IPAddress, UInt16?)? {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"),
                let a = IPAddress(String(text[text.index(after: text.startIndex)..<close]))
            else {
                return nil
            }
            let rest = text[text.index(after: close)...]
            if rest.isEmpty { return (a, nil) }
            guard rest.hasPrefix(":"), let p = UInt16(rest.dropFirst()) else { return nil }
            return (a, p)
        }
        if let a = IPAddress(text), !text.contains(":") || a.isV6 { return (a, nil) }
        guard let colon = text.lastIndex(of: ":"), let a = IPAddress(String(text[..<colon])), !a.isV6,
            let p = UInt16(text[text.index(after: colon)...])
        else { return nil }
        return (a, p)
    }

    /// Every spelling ipvsadm accepts, to one name.
    static let optionNames: [String: String] = [
        "-t": "tcp", "--tcp-service": "tcp", "-u": "udp", "--udp-service": "udp", "--sctp-service": "sctp",
        "-f": "fwmark", "--fwmark-service": "fwmark", "-s": "scheduler", "--scheduler": "scheduler",
        "-p": "persistent", "--persistent": "persistent", "-M": "netmask", "--netmask": "netmask", "-b": "sched-flags",
        "--sched-flags": "sched-flags", "--pe": "pe", "-o": "ops", "--ops": "ops", "-r": "real-server",
        "--real-server": "real-server", "-g": "gatewaying", "--gatewaying": "gatewaying", "-i": "ipip", "--ipip": "ipip",
        "-m": "masquerading", "--masquerading": "masquerading", "-w": "weight", "--weight": "weight", "-x": "u-threshold",
        "--u-threshold": "u-threshold", "-y": "l-threshold", "--l-threshold": "l-threshold", "--tun-type": "tun-type",
        "--tun-port": "tun-port", "--tun-nocsum": "tun-nocsum", "--tun-csum": "tun-csum", "--tun-remcsum": "tun-remcsum",
        "-n": "numeric", "--numeric": "numeric",
    ]

    static let valueOptions: Set<String> = [
        "tcp", "udp", "sctp", "fwmark", "scheduler", "netmask", "sched-flags", "pe", "real-server", "weight", "u-threshold",
        "l-threshold", "tun-type", "tun-port",
    ]
}
