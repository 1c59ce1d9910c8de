// keepalived.conf's LVS part as Tern VIPs: `virtual_server ADDR PORT` and `virtual_server group
// NAME` (with `virtual_server_group` entries, address ranges expanded), `lvs_sched`/`lb_algo`,
// `lvs_method`/`lb_kind TUN [type ipip|gue] [port N]`, `protocol`, `quorum` (min_healthy),
// `delay_loop`, and `real_server ADDR PORT` with `weight` and one check: TCP_CHECK, HTTP_GET
// (`url { path status_code }`), DNS_CHECK (SSL_GET as a TCP check), `connect_port`,
// `connect_timeout`, `retry`. Refused, with the line: NAT and DR (also by default: keepalived's
// default method is NAT), GRE tunnels, fwmark and SCTP services, unknown keywords (keepalived -t
// refuses them too). Reported as not imported: vrrp_*, sorry_server, MISC_CHECK and the other
// check kinds, and keywords whose behaviour Tern does not have.

import TernWire

public enum Keepalived {
    /// The VIPs of `path` and the files it includes (messages quote files under `quotedUnder`,
    /// default `path`'s directory).
    public static func load(
        path: String, quotedUnder: String? = nil, read: (String) -> [UInt8]? = KeepalivedReader.readFile,
        glob: (String) -> [String] = KeepalivedReader.globFiles, skipRefused: Bool = false
    ) throws(ImportError) -> ImportResult {
        try interpret(
            try KeepalivedReader.read(path: path, quotedUnder: quotedUnder, read: read, glob: glob), skipRefused: skipRefused)
    }

    /// The VIPs of keepalived's statements. With `skipRefused`, a virtual_server with a problem is
    /// left out (`result.refused` says why) instead of failing the import; problems outside any
    /// virtual_server still fail it.
    public static func interpret(_ top: [KeepalivedStatement], skipRefused: Bool = false) throws(ImportError) -> ImportResult {
        var r = Interpreter()
        r.skipRefused = skipRefused
        r.run(top)
        guard r.problems.isEmpty else { throw ImportError(r.problems) }
        return r.result
    }
}

/// Walks the statements, collecting VIPs, warnings and refusals.
struct Interpreter {
    var result = ImportResult()
    var problems: [ImportMessage] = []
    var groups: [String: [(address: IPAddress, port: UInt16, source: ImportSource)]] = [:]
    var seen: [String: ImportSource] = [:]
    var skipRefused = false

    mutating func fail(_ s: KeepalivedStatement, _ message: String) { problems.append(ImportMessage(s.source, message)) }
    mutating func warn(_ s: KeepalivedStatement, _ message: String) { result.warnings.append(ImportMessage(s.source, message)) }

    static let notImportedBlocks: Set<String> = [
        "global_defs", "vrrp_instance", "vrrp_sync_group", "vrrp_script", "vrrp_track_file", "track_file", "static_ipaddress",
        "static_routes", "static_rules", "linkbeat_interfaces", "garp_group", "bfd_instance", "net_namespace",
        "net_namespace_ipvs", "instance", "use_symlink_paths",
    ]

    mutating func run(_ top: [KeepalivedStatement]) {
        for s in top where s.keyword == "virtual_server_group" { group(s) }
        for s in top {
            switch s.keyword {
            case "virtual_server_group": break
            case "virtual_server" where skipRefused:
                let (problemsBefore, vipsBefore) = (problems.count, result.vips.count)
                virtualServer(s)
                guard problems.count > problemsBefore else { break }
                let name = "virtual_server \(s.arguments.joined(separator: " "))"
                result.refused += problems[problemsBefore...].map { (name, $0) }
                problems.removeSubrange(problemsBefore...)
                for v in result.vips[vipsBefore...] { seen[v.name] = nil }
                result.vips.removeSubrange(vipsBefore...)
            case "virtual_server": virtualServer(s)
            case _ where Self.notImportedBlocks.contains(s.keyword):
                warn(
                    s,
                    "\(s.keyword) is not imported"
                        + (s.keyword.hasPrefix("vrrp") ? " (Tern announces VIPs over BGP: ternctl bgp-feed)" : ""))
            default: fail(s, "unknown keyword \"\(escapedForMessage(s.keyword))\"")
            }
        }
    }

    /// `virtual_server_group NAME { ADDR PORT; ADDR-LAST PORT; fwmark N }`.
    mutating func group(_ s: KeepalivedStatement) {
        guard s.arguments.count == 1, let name = s.arguments.first, let block = s.block else {
            return fail(s, "virtual_server_group takes a name and a block")
        }
        var members: [(IPAddress, UInt16, ImportSource)] = []
        for e in block {
            if e.keyword == "fwmark" {
                fail(e, "fwmark entries are refused: Tern matches VIPs by address, port and protocol")
                continue
            }
            guard e.words.count == 2, e.block == nil, let port = UInt16(e.words[1]), let addresses = Self.range(e.words[0]) else {
                fail(
                    e,
                    "a group entry is ADDR PORT or ADDR-LAST PORT, got \"\(escapedForMessage(e.words.joined(separator: " ")))\"")
                continue
            }
            members += addresses.map { ($0, port, e.source) }
        }
        if groups[name] != nil { fail(s, "virtual_server_group \(escapedForMessage(name)) defined twice") }
        groups[name] = members.map { (address: $0.0, port: $0.1, source: $0.2) }
    }

    /// `192.0.2.1`, or a range whose last part (IPv4 octet, IPv6 group) runs to LAST: at most 256.
    static func range(_ text: String) -> [IPAddress]? {
        guard let dash = text.lastIndex(of: "-") else { return IPAddress(text).map { [$0] } }
        guard let first = IPAddress(String(text[..<dash])) else { return nil }
        let lastText = text[text.index(after: dash)...]
        let v6 = first.isV6
        guard let last = UInt64(lastText, radix: v6 ? 16 : 10) else { return nil }
        let low = v6 ? first.low & 0xFFFF : UInt64(first.v4Value & 0xFF)
        guard last >= low, last - low < 256, last <= (v6 ? 0xFFFF : 0xFF) else { return nil }
        return (low...last).map { n in
            v6
                ? IPAddress(high: first.high, low: first.low & ~0xFFFF | n, isV6: true)
                : IPAddress(v4: first.v4Value & ~0xFF | UInt32(n))
        }
    }

    /// A statement's one value, seconds (keepalived allows fractions) to milliseconds; a bad value
    /// is refused with its line.
    mutating func seconds(_ e: KeepalivedStatement) -> Int? {
        guard e.arguments.count == 1, let s = Double(e.arguments[e.arguments.startIndex]), s >= 0, s <= 86_400 else {
            fail(e, "\(e.keyword) takes seconds (0-86400)")
            return nil
        }
        return Int((s * 1000).rounded())
    }

    /// `retry N`: failures before a server is down.
    mutating func retries(_ e: KeepalivedStatement) -> Int? {
        guard e.arguments.count == 1, let n = Int(e.arguments[e.arguments.startIndex]), (0...100).contains(n) else {
            fail(e, "\(e.keyword) takes 0-100")
            return nil
        }
        return n
    }

    static let inhibitNote = "inhibit_on_failure is not imported: a failed backend leaves the Maglev table and its flows move"

    /// What a virtual_server says for all of its addresses.
    struct Service {
        var protocolName: String?
        var guePort: UInt16?
        var tunnel = false
        var intervalMilliseconds: Int?
        var minHealthy: Int?
        var persistent = false
        var defaults = CheckDefaults()
        var backends: [ImportedBackend] = []
    }

    /// Timing a check takes from its real_server or virtual_server unless it sets its own.
    struct CheckDefaults {
        var timeoutMilliseconds: Int?
        var retry: Int?
        var intervalMilliseconds: Int?
    }

    static let silentServiceKeywords: Set<String> = [
        "ha_suspend", "virtualhost", "hysteresis", "quorum_up", "quorum_down", "smtp_alert", "ip_family",
        "mh-port", "mh-fallback", "sh-port", "sh-fallback", "flag-1", "flag-2", "flag-3", "warmup",
    ]
    /// Said wherever it appears (service, real server or check): Tern's checks have one period.
    static let delayBeforeRetryNote = "delay_before_retry is not imported: Tern checks again every interval_ms (delay_loop)"
    static let warnedServiceKeywords: [String: String] = [
        "persistence_granularity":
            "persistence_granularity is not imported: hash = \"source\" keeps each client address on one backend",
        "persistence_engine": "persistence_engine is not imported",
        "sorry_server":
            "sorry_server is not imported (with every backend down Tern withdraws the VIP, or keeps them all with all_down = \"keep\")",
        "sorry_server_inhibit": "sorry_server is not imported",
        "sorry_server_lvs_method": "sorry_server is not imported",
        "alpha": "alpha is not imported: Tern starts backends up",
        "omega": "omega is not imported",
        "ops": "one-packet scheduling is not imported: Tern keeps each UDP flow on one backend",
        "one_packet_scheduling": "one-packet scheduling is not imported: Tern keeps each UDP flow on one backend",
    ]

    mutating func virtualServer(_ s: KeepalivedStatement) {
        guard let block = s.block else { return fail(s, "virtual_server needs a block") }
        var targets: [(address: IPAddress, port: UInt16, source: ImportSource)] = []
        let args = Array(s.arguments)
        if args.count == 2 && args[0] == "fwmark" {
            return fail(s, "fwmark services are refused: Tern matches VIPs by address, port and protocol, not by firewall mark")
        } else if args.count == 2 && args[0] == "group" {
            guard let members = groups[args[1]] else {
                return fail(s, "no virtual_server_group named \(escapedForMessage(args[1]))")
            }
            targets = members
        } else if args.count == 2, let a = IPAddress(args[0]), let p = UInt16(args[1]) {
            targets = [(a, p, s.source)]
        } else {
            return fail(
                s,
                "virtual_server takes ADDR PORT, group NAME or fwmark N, got \"\(escapedForMessage(args.joined(separator: " ")))\""
            )
        }
        var service = Service()
        var scheduler: KeepalivedStatement?
        var method: KeepalivedStatement?
        for e in block {
            let value = e.arguments.first
            switch e.keyword {
            case "lvs_sched", "lb_algo": scheduler = e
            case "lvs_method", "lb_kind": method = e
            case "protocol":
                switch value {
                case "TCP": service.protocolName = "tcp"
                case "UDP": service.protocolName = "udp"
                default: fail(e, "protocol \(escapedForMessage(value ?? "")) is refused: Tern balances TCP and UDP")
                }
            case "delay_loop":
                service.intervalMilliseconds = seconds(e) ?? service.intervalMilliseconds
            case "connect_timeout":
                service.defaults.timeoutMilliseconds = seconds(e)
            case "retry", "nb_get_retry":
                service.defaults.retry = retries(e)
            case "quorum":
                guard let q = value.flatMap({ Int($0) }), (1...16384).contains(q) else {
                    fail(e, "quorum takes 1-16384")
                    continue
                }
                service.minHealthy = q
            case "real_server": realServer(e, into: &service)
            case "persistence_timeout":
                service.persistent = true
                warn(
                    e,
                    "persistence becomes hash = \"source\": a client's connections go to one backend as long as the backends stay (no timeout)"
                )
            case "inhibit_on_failure":
                warn(e, Self.inhibitNote)
            case "delay_before_retry": warn(e, Self.delayBeforeRetryNote)
            case _ where Self.silentServiceKeywords.contains(e.keyword): break
            case _ where Self.warnedServiceKeywords[e.keyword] != nil: warn(e, Self.warnedServiceKeywords[e.keyword]!)
            default: fail(e, "unknown keyword \"\(escapedForMessage(e.keyword))\" in virtual_server")
            }
        }
        if let e = scheduler, e.arguments.first != "mh" {
            warn(
                e,
                "scheduler \"\(escapedForMessage(e.arguments.first ?? ""))\" becomes Maglev (Tern's only scheduler; IPVS calls it mh)"
            )
        } else if scheduler == nil {
            warn(s, "no lvs_sched (keepalived's default is wlc): Maglev, Tern's only scheduler")
        }
        if let m = method {
            forwarding(m, into: &service)
        } else {
            fail(s, "no lvs_method: keepalived's default is NAT, which Tern refuses; Tern tunnels (lvs_method TUN)")
        }
        if service.protocolName == nil { warn(s, "no protocol: UDP, as keepalived defaults") }
        if service.backends.isEmpty { fail(s, "no real_server") }
        for t in targets {
            var v = ImportedVIP(
                address: t.address, port: t.port, protocolName: service.protocolName ?? "udp", source: t.source,
                origin: "virtual_server \(args.joined(separator: " "))" + (args[0] == "group" ? " (\(t.address) \(t.port))" : ""))
            v.guePort = service.guePort
            v.intervalMilliseconds = service.intervalMilliseconds
            v.minHealthy = service.minHealthy
            v.persistent = service.persistent
            v.backends = service.backends
            for b in v.backends where b.address == v.address { fail(s, "real_server \(b.address) is the virtual server itself") }
            if let first = seen[v.name] {
                fail(s, "\(v.name) is already a virtual server (\(first))")
                continue
            }
            seen[v.name] = t.source
            result.vips.append(v)
        }
    }

    /// `lvs_method TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]`.
    mutating func forwarding(_ e: KeepalivedStatement, into service: inout Service) {
        let words = Array(e.arguments)
        switch words.first {
        case "TUN": break
        case "NAT":
            return fail(
                e, "NAT is refused: Tern's backends answer clients directly (DSR), so there is no return path to translate")
        case "DR": return fail(e, "DR is refused: Tern tunnels to backends (TUN) and does not rewrite MACs on a shared layer 2")
        default: return fail(e, "lvs_method \(escapedForMessage(words.first ?? "")) is unknown")
        }
        var i = 1
        var type = "ipip"
        var port: UInt16?
        while i < words.count {
            switch words[i] {
            case "type" where i + 1 < words.count:
                type = words[i + 1]
                i += 2
            case "port" where i + 1 < words.count:
                guard let p = UInt16(words[i + 1]), p > 0 else { return fail(e, "port takes 1-65535") }
                port = p
                i += 2
            case "nocsum", "csum", "remcsum": i += 1
            default: return fail(e, "unexpected \"\(escapedForMessage(words[i]))\" in lvs_method")
            }
        }
        switch type {
        case "ipip": break
        case "gue":
            guard let port else { return fail(e, "type gue needs port N (the backends' GUE port)") }
            service.guePort = port
        default: return fail(e, "tunnel type \(escapedForMessage(type)) is refused: Tern encapsulates in IPIP or GUE")
        }
        service.tunnel = true
    }

    static let checkKinds: [String: HealthConfig.Check] = [
        "TCP_CHECK": .tcp, "HTTP_GET": .http, "SSL_GET": .tcp, "DNS_CHECK": .dns,
    ]
    static let otherChecks: Set<String> = ["MISC_CHECK", "SMTP_CHECK", "BFD_CHECK", "UDP_CHECK", "PING_CHECK", "FILE_CHECK"]
    static let silentServerKeywords: Set<String> = [
        "notify_up", "notify_down", "smtp_alert", "virtualhost", "warmup", "alpha",
    ]

    mutating func realServer(_ s: KeepalivedStatement, into service: inout Service) {
        let args = Array(s.arguments)
        guard (1...2).contains(args.count), let address = IPAddress(args[0]), args.count == 1 || UInt16(args[1]) != nil else {
            return fail(s, "real_server takes ADDR [PORT], got \"\(escapedForMessage(args.joined(separator: " ")))\"")
        }
        var backend = ImportedBackend(address: address, weight: 1, source: s.source)
        var defaults = service.defaults
        var checks: [KeepalivedStatement] = []
        var drainedForCheck = false
        for e in s.block ?? [] {
            let value = e.arguments.first
            switch e.keyword {
            case "weight":
                guard let w = value.flatMap({ Int($0) }), (0...65535).contains(w) else {
                    fail(e, "weight: Tern weights are 0-65535")
                    continue
                }
                backend.weight = w
            case "inhibit_on_failure":
                warn(e, Self.inhibitNote)
            case "connect_timeout": defaults.timeoutMilliseconds = seconds(e)
            case "retry", "nb_get_retry": defaults.retry = retries(e)
            case "delay_loop": defaults.intervalMilliseconds = seconds(e)
            case "uthreshold", "lthreshold": warn(e, "\(e.keyword) is not imported: Tern has no connection limits")
            case "lvs_method": forwarding(e, into: &service)
            case _ where Self.checkKinds[e.keyword] != nil: checks.append(e)
            case _ where Self.otherChecks.contains(e.keyword):
                // Unchecked, the backend would take traffic whatever the script says: imported drained.
                warn(
                    e,
                    "\(e.keyword) is not imported (Tern checks with TCP, HTTP or DNS): \(address) is imported drained; give it "
                        + "a check and undrain it")
                drainedForCheck = true
            case "delay_before_retry": warn(e, Self.delayBeforeRetryNote)
            case _ where Self.silentServerKeywords.contains(e.keyword): break
            default: fail(e, "unknown keyword \"\(escapedForMessage(e.keyword))\" in real_server")
            }
        }
        if let c = checks.first {
            backend.check = check(c, defaults: defaults)
        } else if drainedForCheck {
            backend.draining = true
        }
        if checks.count > 1 {
            warn(checks[1], "only the first check of a real_server is imported (Tern checks a backend one way)")
        }
        if let interval = defaults.intervalMilliseconds, service.intervalMilliseconds == nil {
            service.intervalMilliseconds = interval
        }
        if service.backends.contains(where: { $0.address == address }) { return fail(s, "real_server \(address) twice") }
        service.backends.append(backend)
    }

    static let checkKeywords: Set<String> = [
        "connect_ip", "connect_port", "bindto", "bind_port", "bind_if", "connect_timeout", "retry", "nb_get_retry",
        "delay_loop", "warmup", "alpha", "log_all_failures", "fwmark", "url", "virtualhost", "http_protocol", "enable_sni",
        "fast_recovery", "tls_compliant",
    ]

    mutating func check(_ s: KeepalivedStatement, defaults: CheckDefaults) -> ImportedCheck {
        var c = ImportedCheck(kind: Self.checkKinds[s.keyword]!)
        if s.keyword == "SSL_GET" { warn(s, "SSL_GET becomes a TCP check (Tern's checks speak no TLS)") }
        var timeout = defaults.timeoutMilliseconds
        var retry = defaults.retry
        for e in s.block ?? [] {
            let value = e.arguments.first
            switch e.keyword {
            case "connect_port":
                guard let p = value.flatMap({ Int($0) }), (1...65535).contains(p) else {
                    fail(e, "connect_port takes 1-65535")
                    continue
                }
                c.port = p
            case "connect_timeout": timeout = seconds(e)
            case "retry", "nb_get_retry": retry = retries(e)
            case "connect_ip": warn(e, "connect_ip is not imported: Tern checks the backend's own address")
            case "url":
                if c.kind == .http && c.path == nil {
                    url(e, into: &c)
                } else if s.keyword == "HTTP_GET" {
                    warn(e, "only the first url of a check is imported")
                }  // SSL_GET: its urls go with it (a TCP check)
            case "type", "name":
                if s.keyword == "DNS_CHECK" {
                    warn(e, "DNS_CHECK \(e.keyword) is not imported: Tern's DNS check asks for \". NS\" and wants any answer")
                } else {
                    fail(e, "unknown keyword \"\(e.keyword)\" in \(s.keyword)")
                }
            case "delay_before_retry": warn(e, Self.delayBeforeRetryNote)
            case _ where Self.checkKeywords.contains(e.keyword): break
            default: fail(e, "unknown keyword \"\(escapedForMessage(e.keyword))\" in \(s.keyword)")
            }
        }
        c.timeoutMilliseconds = timeout
        c.fall = retry.map { max(1, $0) }
        return c
    }

    mutating func url(_ s: KeepalivedStatement, into c: inout ImportedCheck) {
        for e in s.block ?? [] {
            let value = e.arguments.first
            switch e.keyword {
            case "path": c.path = value
            case "status_code":
                guard e.arguments.count == 1, let code = value.flatMap({ Int($0) }), (100...599).contains(code) else {
                    warn(e, "status_code: Tern expects one status (100-599); 200 is used")
                    continue
                }
                c.expectStatus = code
            case "digest", "regex", "regex_no_match", "regex_options", "regex_stack", "regex_min_offset", "regex_max_offset",
                "virtualhost":
                warn(e, "\(e.keyword) is not imported: Tern checks the status only")
            default: fail(e, "unknown keyword \"\(escapedForMessage(e.keyword))\" in url")
            }
        }
    }
}
