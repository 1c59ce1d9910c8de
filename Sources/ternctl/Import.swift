// `ternctl import ipvsadm|keepalived FILE`: another tool's services as Tern `[[vip]]` tables
// (with `--template`, a whole config), and `ternctl export ipvsadm`: the running VIPs as
// `ipvsadm -R` input (scheduler mh, tunnel forwarding).

import ArgumentParser
import TernAgent
import TernConfig
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a Tern config from an ipvsadm-save dump or a keepalived.conf (refusals: exit 78, each with its line).",
        discussion: """
            ternctl import ipvsadm [FILE|-]      the `ipvsadm -S -n` format
            ternctl import keepalived FILE        keepalived.conf, includes followed
            What is imported with a difference is noted on stderr with its line; what Tern cannot do \
            (direct routing, NAT, fwmark, ...) is refused: the import fails, or with --skip-refused that service is left \
            out with a note (and a comment in the output). --template FILE puts the template's tables \
            ([node], [[port]], ...) first and checks the whole config.
            """)

    @Argument(help: "ipvsadm or keepalived.")
    var format: String

    @Argument(help: "The file (ipvsadm: - or none for standard input).")
    var file: String = "-"

    @Option(help: "A Tern config whose tables ([node], [[port]], ...) go before the imported VIPs; the result is checked.")
    var template: String?

    @Flag(help: "Import what can be imported: leave out each refused service, with a note saying why, instead of failing.")
    var skipRefused = false

    func run() throws {
        var result: ImportResult
        do {
            switch format {
            case "ipvsadm":
                let name = file == "-" ? "<stdin>" : file
                guard let bytes = file == "-" ? readAll(0) : KeepalivedReader.readFile(file),
                    let text = String(validating: bytes, as: UTF8.self)
                else {
                    printError("ternctl import: cannot read \(name) as UTF-8 text")
                    throw ExitCode(66)
                }
                result = try IPVSAdm.parse(text, file: name, skipRefused: skipRefused)
            case "keepalived":
                result = try Keepalived.load(path: file, skipRefused: skipRefused)
            default:
                printError("ternctl import: the format is ipvsadm or keepalived, not \(escapedForMessage(format))")
                throw ExitCode(64)
            }
        } catch let error as ImportError {
            printError(error.description)
            throw ExitCode(ConfigError.exitCode)
        }
        let vips = ImportRenderer.toml(result.vips, warnings: &result.warnings)
        for w in result.warnings { printError("note: \(w)") }
        var text = "# Imported by ternctl import \(format) \(file == "-" ? "" : file)\n"
        for (service, problem) in result.refused {
            printError("skipped: \(service): \(problem)")
            text += "# skipped (refused): \(service): \(problem)\n".split(separator: "\n").joined(separator: " ") + "\n"
        }
        if let template {
            guard let bytes = KeepalivedReader.readFile(template), let t = String(validating: bytes, as: UTF8.self) else {
                printError("ternctl import: cannot read the template \(template)")
                throw ExitCode(66)
            }
            text += t + (t.hasSuffix("\n") ? "\n" : "\n\n")
            do {
                _ = try ConfigLoader.parse(text + vips, file: "\(template) + imported VIPs")
            } catch {
                printError(error.description)
                print(text + vips, terminator: "")
                throw ExitCode(ConfigError.exitCode)
            }
        }
        print(text + vips, terminator: "")
    }

    func readAll(_ fd: Int32) -> [UInt8]? {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while out.count <= KeepalivedReader.maxFileBytes {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 { return nil }
            if n == 0 { break }
            out += buffer[0..<n]
        }
        return out
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the running VIPs (or a config's, --config) for ipvsadm -R: scheduler mh, tunnel forwarding.",
        discussion: """
            Each backend gets the weight it has in the running Maglev table (0 while drained or down: \
            quiescent in IPVS). A port-0 VIP is written persistent (-p 1): IPVS allows port 0 only there.
            """)

    @Argument(help: "ipvsadm.")
    var format: String

    @OptionGroup var options: SocketOptions

    @Option(
        help:
            "Export this config file's VIPs (their configured weights) instead of asking ternd: a whole config or what ternctl import printed."
    )
    var config: String?

    func run() throws {
        guard format == "ipvsadm" else {
            printError("ternctl export: the format is ipvsadm")
            throw ExitCode(64)
        }
        let services: [IPVSAdm.Service]
        if let config {
            // ipvsadm has no prefixes: a CIDR VIP is one service per address.
            services = try loadVIPs(config).flatMap { v in
                v.addresses.map { address in
                    IPVSAdm.Service(
                        address: address, port: v.port, protocolName: v.protocolName,
                        guePort: v.encapsulation == .gue ? v.guePort : nil, persistent: v.hashMode == .source,
                        backends: v.backends.map { ($0.address, $0.draining ? 0 : $0.weight) })
                }
            }
        } else {
            services = try running()
        }
        print(IPVSAdm.save(services), terminator: "")
    }

    /// From ternd: show-vips for the VIPs, show-backends for each backend's running weight.
    func running() throws -> [IPVSAdm.Service] {
        let vips = try options.decode(try options.send(.showVIPs), as: VIPsReply.self).vips
        let rows = try options.decode(try options.send(.showBackends(vip: nil)), as: BackendsReply.self).vips
        var weights: [String: [(IPAddress, Int)]] = [:]
        for r in rows {
            weights[r.vip] = r.backends.compactMap { b in IPAddress(b.address).map { ($0, b.effectiveWeight) } }
        }
        return vips.flatMap { v -> [IPVSAdm.Service] in
            guard let address = IPAddress(v.address) else { return [] }
            let gue = v.encap == "gue" ? UInt16(v.guePort) : nil
            let length = v.prefix.split(separator: "/").last.flatMap { Int($0) } ?? address.bitWidth
            let count = UInt64(1) << UInt64(max(0, min(8, address.bitWidth - length)))
            return (0..<count).map { i in
                IPVSAdm.Service(
                    address: address.advanced(by: i), port: UInt16(v.port), protocolName: v.protocol, guePort: gue,
                    persistent: v.hash == "source", backends: weights[v.vip] ?? [])
            }
        }
    }
}
