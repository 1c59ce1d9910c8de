// ternctl's commands against a running ternd, over its control socket (one JSON request, one
// JSON reply). --json prints the reply as it came.

import ArgumentParser
import Foundation
import TernAgent
import TernConfig
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

struct SocketOptions: ParsableArguments {
    @Option(help: "ternd's control socket ([control] socket in its config).")
    var socket: String = ControlConfig.defaultSocket

    @Flag(help: "Print ternd's reply as one JSON object.")
    var json = false

    /// Sends a command and returns ternd's reply line; exits 69 (EX_UNAVAILABLE) when ternd cannot
    /// be reached.
    func send(_ command: ControlCommand) throws -> [UInt8] {
        do {
            return try ControlClient.exchange(command, socket: socket)
        } catch {
            printError("ternctl: \(error.description) (is ternd running? --socket names its control socket)")
            throw ExitCode(69)
        }
    }

    /// A reply's body: ternd's error goes to stderr (exit `failure`), as does a reply this ternctl
    /// cannot read (exit 1).
    func decode<R: Decodable>(_ line: [UInt8], as type: R.Type, failure: Int32 = 1) throws -> R {
        let header = try? ControlWire.decode(ReplyHeader.self, from: line)
        guard header?.ok == true else {
            printError("ternctl: \(header?.error ?? "ternd refused the request")")
            throw ExitCode(failure)
        }
        do {
            return try ControlWire.decode(type, from: line)
        } catch {
            printError("ternctl: \(error.message)")
            throw ExitCode(1)
        }
    }

    /// With --json prints the reply as it came (exit `failure` when it is not ok); otherwise `text`
    /// of its body.
    func finish<R: Decodable>(_ line: [UInt8], as type: R.Type, failure: Int32 = 1, text: (R) -> String) throws {
        if json {
            print(String(decoding: line.last == 0x0A ? line.dropLast() : line[...], as: UTF8.self))
            if (try? ControlWire.decode(ReplyHeader.self, from: line))?.ok != true { throw ExitCode(failure) }
            return
        }
        print(text(try decode(line, as: type, failure: failure)), terminator: "")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Is ternd up, and how: version, uptime, config and generation, workers, ports, last reload.")
    @OptionGroup var options: SocketOptions

    func run() throws {
        try options.finish(try options.send(.status), as: StatusReply.self) { r in
            var s = "ternd \(r.version), up \(r.uptimeSeconds) s\n"
            s += "config \(r.config): \(r.summary)\ngeneration \(r.generation), workers \(r.workers)\n"
            for p in r.ports {
                let stats = p.stats.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                s += "port \(p.name): link \(p.linkUp ? "up" : "down"); \(stats.joined(separator: ", "))\n"
            }
            for g in r.gateways {
                s +=
                    "\(ConfigSchema.port.element(g.port)) gateway \(g.gateway) on \(g.interface): "
                    + (g.mac.isEmpty ? "UNKNOWN (dropping no_neighbor)" : "at \(g.mac)") + ", kernel state \(g.state)\n"
            }
            let announced = Set(r.announced)
            for (vip, f) in r.tableFingerprints.sorted(by: { $0.key < $1.key }) {
                s += "table \(vip) fingerprint \(f), \(announced.contains(vip) ? "announced" : "withdrawn")\n"
            }
            if let f = r.fleet {
                s += "fleet: site revision \(f.revision), etcd \(f.reachable ? "reachable" : "UNREACHABLE (\(f.error))")"
                s +=
                    f.refused.isEmpty
                    ? "\n" : "; newest document refused: \(f.refused.split(separator: "\n").joined(separator: " | "))\n"
            }
            s += "reloads ok \(r.reloads.ok), failed \(r.reloads.failed)\n"
            if let last = r.lastReload { s += "last reload: \(last.ok ? "ok" : "FAILED"): \(last.message)\n" }
            return s + "control protocol \(r.protocolVersion)\n"
        }
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Every counter of the running data plane, live: the keys of ternd's final JSON line.",
        discussion: """
            rx is the sum of verdicts; rx_polled what the workers took from their queues: rx - rx_polled is at most \
            burst_size x workers (bursts being processed), and at least minus the IP fragments held ahead of their first \
            right now (at most 64 per worker; fragments_held counts every fragment ever held). With --watch, rates per second over each interval, like \
            `ipvsadm --rate`.
            """)
    @OptionGroup var options: SocketOptions
    @Option(help: "Print rates per second every SECONDS instead of totals once.") var watch: Double?
    @Option(help: "With --watch: stop after this many intervals (default: until interrupted).") var count: Int?

    func run() throws {
        guard let interval = watch else {
            try options.finish(try options.send(.stats), as: StatsReply.self) { Stats.text($0) }
            return
        }
        guard interval > 0 else { throw ValidationError("--watch needs a number of seconds above 0") }
        var previous = try options.decode(try options.send(.stats), as: StatsReply.self)
        var done = 0
        while count.map({ done < $0 }) ?? true {
            usleep(UInt32(min(interval, 3600) * 1_000_000))
            let now = try options.decode(try options.send(.stats), as: StatsReply.self)
            let seconds = max(1e-9, now.time - previous.time)
            if options.json {
                var rates: [String: JSONValue] = ["interval_s": .double(seconds)]
                for key in Stats.rateKeys { rates[key + "_per_s"] = .double(Stats.delta(previous[key], now[key]) / seconds) }
                print(String(decoding: ControlWire.encode(rates).dropLast(), as: UTF8.self))
            } else {
                print(Stats.rates(previous, now, seconds: seconds), terminator: "")
            }
            fflush(nil)  // every stream: the line appears now, not when the buffer fills
            previous = now
            done += 1
        }
    }

    static let rateKeys = ["rx", "forwarded", "host", "replied", "tx", "tx_failed"]

    static func delta(_ a: JSONValue?, _ b: JSONValue?) -> Double { (b?.number ?? 0) - (a?.number ?? 0) }

    static func text(_ r: StatsReply) -> String {
        var s = ""
        for key in ["rx", "rx_polled", "forwarded", "host", "replied", "tx", "tx_failed", "workers"] {
            s += "\(key) \(r[key]?.description ?? "0")\n"
        }
        // The host path's counters, when ternd has host interfaces.
        for key in ["host_tx", "host_rx", "host_dropped", "host_rx_dropped"] {
            if let v = r[key] { s += "\(key) \(v)\n" }
        }
        for (group, label) in [("replies", "replied"), ("dropped", "dropped"), ("flows", "flows"), ("reloads", "reloads")] {
            let pairs = (r[group]?.object ?? [:]).sorted { $0.key < $1.key }
            if group == "dropped" { s += "dropped \(Int(pairs.reduce(0) { $0 + $1.value.number }))\n" }
            for (k, v) in pairs { s += "  \(label) \(k) \(v)\n" }
        }
        for (k, v) in (r["per_vip"]?.object ?? [:]).sorted(by: { $0.key < $1.key }) { s += "vip \(k) \(v)\n" }
        for (k, v) in (r["per_backend"]?.object ?? [:]).sorted(by: { $0.key < $1.key }) { s += "backend \(k) \(v)\n" }
        return s
    }

    /// Packets per second per counter over one interval, as `ipvsadm --rate` shows them.
    static func rates(_ a: StatsReply, _ b: StatsReply, seconds: Double) -> String {
        func row(_ name: String, _ perSecond: Double) -> String {
            let value = String(format: "%.1f", perSecond)
            return name.padding(toLength: max(name.count, 32), withPad: " ", startingAt: 0)
                + String(repeating: " ", count: max(0, 14 - value.count)) + value + "\n"
        }
        var s = "counter".padding(toLength: 32, withPad: " ", startingAt: 0) + "    per second\n"
        for key in rateKeys { s += row(key, delta(a[key], b[key]) / seconds) }
        let da = a["dropped"]?.object ?? [:]
        let db = b["dropped"]?.object ?? [:]
        s += row("dropped", db.keys.reduce(0.0) { $0 + delta(da[$1], db[$1]) } / seconds)
        let va = a["per_vip"]?.object ?? [:]
        for (k, v) in (b["per_vip"]?.object ?? [:]).sorted(by: { $0.key < $1.key }) {
            s += row("vip " + k, delta(va[k], v) / seconds)
        }
        return s + "\n"
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reload ternd's config and wait: exit 0, or 78 with the config error (the running config stays).")
    @OptionGroup var options: SocketOptions
    @Option(
        help:
            "The config file ternd runs: its [control] socket is the one to use (what the systemd unit's ExecReload passes; --socket wins when given)."
    )
    var config: String?

    func run() throws {
        var options = self.options
        if let config, options.socket == ControlConfig.defaultSocket {
            options.socket = (try? ConfigLoader.controlSocket(path: config)) ?? ControlConfig.defaultSocket
        }
        try options.finish(try options.send(.reload), as: MessageReply.self, failure: ConfigError.exitCode) { "\($0.message)\n" }
    }
}

/// Which backend a drain or undrain names.
struct BackendSelection: ParsableArguments {
    @Argument(help: "The backend's address.") var backend: String
    @Option(help: "Only this VIP (ADDR:PORT/PROTO); default: every VIP with that backend.") var vip: String?

    /// Sends `name` (drain or undrain) for this backend and prints what ternd did; an address that
    /// is not one is refused as ternd refuses it (exit 1).
    func send(_ name: String, _ command: (IPAddress, String?) -> ControlCommand, options: SocketOptions) throws {
        guard let a = IPAddress(backend) else {
            printError("ternctl: \(name) needs backend=ADDRESS")
            throw ExitCode(1)
        }
        try options.finish(try options.send(command(a, vip)), as: MessageReply.self) { "\($0.message)\n" }
    }
}

struct Drain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Give a backend weight 0 at runtime: established flows stay, new flows go elsewhere. Kept across reloads while the backend stays in the config."
    )
    @OptionGroup var options: SocketOptions
    @OptionGroup var selection: BackendSelection

    func run() throws { try selection.send("drain", ControlCommand.drain, options: options) }
}

struct Undrain: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "End a drain: the backend gets its config weight again.")
    @OptionGroup var options: SocketOptions
    @OptionGroup var selection: BackendSelection

    func run() throws { try selection.send("undrain", ControlCommand.undrain, options: options) }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the running VIPs, or each VIP's backends with weight, state, Maglev slots, share, packets and new flows.",
        subcommands: [ShowVIPs.self, ShowBackends.self])
}

struct ShowVIPs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vips", abstract: "The running VIPs.")
    @OptionGroup var options: SocketOptions

    func run() throws {
        try options.finish(try options.send(.showVIPs), as: VIPsReply.self) { r in
            r.vips.map { v in
                let flags = (v.quic ? " quic" : "") + (v.clampMSS ? " clamp_mss" : "")
                return
                    "\(v.vip) \(v.announced ? "announced" : "withdrawn") encap=\(v.encap) hash=\(v.hash)\(flags) backends=\(v.backends) "
                    + "taking_new_flows=\(v.backendsTakingNewFlows) table_size=\(v.tableSize) "
                    + "fingerprint=\(v.fingerprint) packets=\(v.packets) bytes=\(v.bytes) new_flows=\(v.newFlows)\n"
            }.joined()
        }
    }
}

struct ShowBackends: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backends",
        abstract:
            "Each VIP's backends: weight, effective weight, state, Maglev slots and share, packets and new flows since start.")
    @OptionGroup var options: SocketOptions
    @Argument(help: "Only this VIP (ADDR:PORT/PROTO).") var vip: String?

    func run() throws {
        try options.finish(try options.send(.showBackends(vip: vip)), as: BackendsReply.self) { r in
            var s = ""
            for v in r.vips {
                s += "\(v.vip)\n"
                for b in v.backends {
                    s +=
                        "  \(b.address) weight=\(b.weight) effective=\(b.effectiveWeight) state=\(b.state) slots=\(b.slots) "
                        + "share=\(formatPercent(b.share * 100)) packets=\(b.packets) bytes=\(b.bytes) new_flows=\(b.newFlows) health=\"\(b.health)\"\n"
                }
            }
            return s
        }
    }
}
