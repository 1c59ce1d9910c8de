// ternctl's commands against a running ternd, over its control socket (one JSON request, one
// JSON reply). --json prints the reply as it came.

import ArgumentParser
import Foundation
import TernAgent
import TernConfig

#if canImport(Glibc)
    import Glibc
#endif

struct SocketOptions: ParsableArguments {
    @Option(help: "ternd's control socket ([control] socket in its config).")
    var socket: String = ControlConfig.defaultSocket

    @Flag(help: "Print ternd's reply as one JSON object.")
    var json = false

    /// Sends a request; exits 69 (EX_UNAVAILABLE) when ternd cannot be reached.
    func send(_ command: String, _ arguments: [String: String] = [:]) throws -> [String: Any] {
        do {
            return try ControlClient.send(ControlRequest(command: command, arguments: arguments), socket: socket)
        } catch {
            printError("ternctl: \(error.description) (is ternd running? --socket names its control socket)")
            throw ExitCode(69)
        }
    }

    /// Prints the reply (JSON, or `text` of it); a failed reply goes to stderr and exits `failure`.
    func finish(_ reply: [String: Any], failure: Int32 = 1, text: ([String: Any]) -> String) throws {
        if json {
            let data =
                (try? JSONSerialization.data(withJSONObject: reply, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            print(String(decoding: data, as: UTF8.self))
        }
        guard reply["ok"] as? Bool == true else {
            if !json { printError("ternctl: \(reply["error"] as? String ?? "ternd refused the request")") }
            throw ExitCode(failure)
        }
        if !json { print(text(reply), terminator: "") }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Is ternd up, and how: version, uptime, config and generation, workers, ports, last reload.")
    @OptionGroup var options: SocketOptions

    func run() throws {
        try options.finish(try options.send("status")) { r in
            var s = "ternd \(r["version"] ?? "?"), up \(r["uptime_s"] ?? "?") s\n"
            s +=
                "config \(r["config"] ?? "?"): \(r["summary"] ?? "")\ngeneration \(r["generation"] ?? "?"), workers \(r["workers"] ?? "?")\n"
            for p in r["ports"] as? [[String: Any]] ?? [] {
                let stats = (p["stats"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                s +=
                    "port \(p["name"] ?? "?"): link \(p["link_up"] as? Bool == true ? "up" : "down"); \(stats.joined(separator: ", "))\n"
            }
            for g in r["gateways"] as? [[String: Any]] ?? [] {
                let mac = g["mac"] as? String ?? ""
                s +=
                    "port[\(g["port"] ?? "?")] gateway \(g["gateway"] ?? "?") on \(g["interface"] ?? "?"): "
                    + (mac.isEmpty ? "UNKNOWN (dropping no_neighbor)" : "at \(mac)") + ", kernel state \(g["state"] ?? "?")\n"
            }
            for (vip, f) in (r["table_fingerprints"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) {
                s += "table \(vip) fingerprint \(f)\n"
            }
            if let reloads = r["reloads"] as? [String: Any] {
                s += "reloads ok \(reloads["ok"] ?? 0), failed \(reloads["failed"] ?? 0)\n"
            }
            if let last = r["last_reload"] as? [String: Any] {
                s += "last reload: \(last["ok"] as? Bool == true ? "ok" : "FAILED"): \(last["message"] ?? "")\n"
            }
            return s
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
            try options.finish(try options.send("stats")) { Stats.text($0) }
            return
        }
        guard interval > 0 else { throw ValidationError("--watch needs a number of seconds above 0") }
        var previous = try options.send("stats")
        var done = 0
        while count.map({ done < $0 }) ?? true {
            usleep(UInt32(min(interval, 3600) * 1_000_000))
            let now = try options.send("stats")
            let seconds = max(1e-9, (now["time"] as? Double ?? 0) - (previous["time"] as? Double ?? 0))
            if options.json {
                var rates: [String: Any] = ["interval_s": seconds]
                for key in ["rx", "forwarded", "host", "replied", "tx", "tx_failed"] {
                    rates[key + "_per_s"] = Double(number(now[key]) - number(previous[key])) / seconds
                }
                let data = (try? JSONSerialization.data(withJSONObject: rates, options: [.sortedKeys])) ?? Data()
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(Stats.rates(previous, now, seconds: seconds), terminator: "")
            }
            fflush(nil)  // every stream: the line appears now, not when the buffer fills
            previous = now
            done += 1
        }
    }

    func number(_ v: Any?) -> Int { (v as? Int) ?? Int((v as? Double) ?? 0) }

    static func text(_ r: [String: Any]) -> String {
        var s = ""
        for key in ["rx", "rx_polled", "forwarded", "host", "replied", "tx", "tx_failed", "workers"] {
            s += "\(key) \(r[key] ?? 0)\n"
        }
        // The host path's counters, when ternd has host interfaces.
        for key in ["host_tx", "host_rx", "host_dropped", "host_rx_dropped"] where r[key] != nil { s += "\(key) \(r[key]!)\n" }
        for (group, label) in [("replies", "replied"), ("dropped", "dropped"), ("flows", "flows"), ("reloads", "reloads")] {
            let pairs = (r[group] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }
            if group == "dropped" { s += "dropped \(pairs.reduce(0) { $0 + (($1.value as? Int) ?? 0) })\n" }
            for (k, v) in pairs { s += "  \(label) \(k) \(v)\n" }
        }
        for (k, v) in (r["per_vip"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) { s += "vip \(k) \(v)\n" }
        for (k, v) in (r["per_backend"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) { s += "backend \(k) \(v)\n" }
        return s
    }

    /// Packets per second per counter over one interval, as `ipvsadm --rate` shows them.
    static func rates(_ a: [String: Any], _ b: [String: Any], seconds: Double) -> String {
        func n(_ v: Any?) -> Double { Double((v as? Int) ?? 0) }
        func row(_ name: String, _ perSecond: Double) -> String {
            let value = String(format: "%.1f", perSecond)
            return name.padding(toLength: max(name.count, 32), withPad: " ", startingAt: 0)
                + String(repeating: " ", count: max(0, 14 - value.count)) + value + "\n"
        }
        var s = "counter".padding(toLength: 32, withPad: " ", startingAt: 0) + "    per second\n"
        for key in ["rx", "forwarded", "host", "replied", "tx", "tx_failed"] { s += row(key, (n(b[key]) - n(a[key])) / seconds) }
        let da = a["dropped"] as? [String: Any] ?? [:]
        let db = b["dropped"] as? [String: Any] ?? [:]
        s += row("dropped", db.keys.reduce(0.0) { $0 + n(db[$1]) - n(da[$1]) } / seconds)
        let va = a["per_vip"] as? [String: Any] ?? [:]
        for (k, v) in (b["per_vip"] as? [String: Any] ?? [:]).sorted(by: { $0.key < $1.key }) {
            s += row("vip " + k, (n(v) - n(va[k])) / seconds)
        }
        return s + "\n"
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reload ternd's config and wait: exit 0, or 78 with the config error (the running config stays).")
    @OptionGroup var options: SocketOptions

    func run() throws {
        let reply = try options.send("reload")
        if reply["ok"] as? Bool != true, !options.json { printError(reply["error"] as? String ?? "reload failed") }
        try options.finish(reply.merging(["error": "reload failed"]) { a, _ in a }, failure: ConfigError.exitCode) {
            "\($0["message"] ?? "")\n"
        }
    }
}

/// Which backend a drain or undrain names.
struct BackendSelection: ParsableArguments {
    @Argument(help: "The backend's address.") var backend: String
    @Option(help: "Only this VIP (ADDR:PORT/PROTO); default: every VIP with that backend.") var vip: String?

    var arguments: [String: String] { ["backend": backend].merging(vip.map { ["vip": $0] } ?? [:]) { a, _ in a } }
}

struct Drain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Give a backend weight 0 at runtime: established flows stay, new flows go elsewhere. Kept across reloads while the backend stays in the config."
    )
    @OptionGroup var options: SocketOptions
    @OptionGroup var selection: BackendSelection

    func run() throws { try options.finish(try options.send("drain", selection.arguments)) { "\($0["message"] ?? "")\n" } }
}

struct Undrain: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "End a drain: the backend gets its config weight again.")
    @OptionGroup var options: SocketOptions
    @OptionGroup var selection: BackendSelection

    func run() throws { try options.finish(try options.send("undrain", selection.arguments)) { "\($0["message"] ?? "")\n" } }
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
        try options.finish(try options.send("show-vips")) { r in
            (r["vips"] as? [[String: Any]] ?? []).map { v in
                let flags = ["quic", "clamp_mss"].filter { v[$0] as? Bool == true }.map { " \($0)" }.joined()
                return
                    "\(v["vip"] ?? "?") encap=\(v["encap"] ?? "?") hash=\(v["hash"] ?? "?")\(flags) backends=\(v["backends"] ?? 0) "
                    + "taking_new_flows=\(v["backends_taking_new_flows"] ?? 0) table_size=\(v["table_size"] ?? 0) "
                    + "fingerprint=\(v["fingerprint"] ?? "") packets=\(v["packets"] ?? 0) new_flows=\(v["new_flows"] ?? 0)\n"
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
        try options.finish(try options.send("show-backends", vip.map { ["vip": $0] } ?? [:])) { r in
            var s = ""
            for v in r["vips"] as? [[String: Any]] ?? [] {
                s += "\(v["vip"] ?? "?")\n"
                for b in v["backends"] as? [[String: Any]] ?? [] {
                    let share = formatPercent((b["share"] as? Double ?? 0) * 100)
                    s +=
                        "  \(b["address"] ?? "?") weight=\(b["weight"] ?? 0) effective=\(b["effective_weight"] ?? 0) "
                        + "state=\(b["state"] ?? "?") slots=\(b["slots"] ?? 0) share=\(share) packets=\(b["packets"] ?? 0) "
                        + "new_flows=\(b["new_flows"] ?? 0) health=\"\(b["health"] ?? "")\"\n"
                }
            }
            return s
        }
    }
}
