// ternctl: check a config, replay a pcap through the packet path, print Maglev tables; and, over
// the control socket, status, reload, drain and show of a running ternd.

import ArgumentParser
import TernAgent
import TernConfig

#if canImport(Glibc)
    import Glibc
#endif

@main
struct Ternctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ternctl",
        abstract: """
            Tern load balancer tools: check configs, simulate the data plane on pcap files, show Maglev tables; \
            operate a running ternd (status, stats, reload, drain, show, capture, the BGP feed); run a fleet from etcd; import and export IPVS \
            and keepalived files; set up backends (Tern's decapsulating XDP program).
            """,
        discussion: """
            Exit status: 0 success, 78 bad config (EX_CONFIG), 66 unreadable input (EX_NOINPUT), 69 ternd not reachable \
            (EX_UNAVAILABLE), 1 other errors.
            """,
        version: TernVersion.string,
        subcommands: [
            Check.self, Simulate.self, Table.self, Status.self, Stats.self, Reload.self, Drain.self, Undrain.self, Show.self,
            BGPFeed.self, Capture.self, Fleet.self, Import.self, Export.self, Backend.self, Reference.self,
        ])
}

/// Writes to stderr (fd 2) without Foundation's `FileHandle`.
func printError(_ message: String) {
    let line = message.hasSuffix("\n") ? message : message + "\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// Loads a config or exits 78 with every problem on stderr.
func loadConfig(_ path: String) throws -> TernConfig {
    try exitingOnConfigError { () throws(ConfigError) in try ConfigLoader.load(path: path) }
}

/// `ConfigLoader.loadVIPs`, or exit 78 with every problem on stderr.
func loadVIPs(_ path: String) throws -> [VIPConfig] {
    try exitingOnConfigError { () throws(ConfigError) in try ConfigLoader.loadVIPs(path: path) }
}

func exitingOnConfigError<T>(_ load: () throws(ConfigError) -> T) throws -> T {
    do {
        return try load()
    } catch {
        printError(error.description)
        throw ExitCode(ConfigError.exitCode)
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a config file: exit 0 with a one-line summary, 78 with the problems.")

    @Argument(help: "The TOML config file.")
    var config: String

    func run() throws {
        let c = try loadConfig(config)
        if let problem = ControlServer.placeProblem(c.control.socket) {
            printError(ConfigError(file: config, problems: [ConfigProblem(ConfigSchema.controlSocket.path, problem)]).description)
            throw ExitCode(ConfigError.exitCode)
        }
        for w in c.importWarnings + c.notes { printError("note: \(w)") }
        print("ok: \(config): \(c.summary)")
    }
}

struct Reference: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print Tern's generated references in Markdown (docs/config-reference.md, docs/metrics-reference.md).",
        subcommands: [Config.self, Metrics.self, RestartOnly.self])

    struct Config: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every config key: type, range, default, restart-only, and its meaning from the reference config.")
        @Argument(help: "configs/reference.toml (installed as PREFIX/share/doc/tern/reference.toml).")
        var referenceConfig: String

        func run() throws {
            guard case .success(let bytes) = RegularFile.read(referenceConfig, limit: 1 << 20) else {
                printError("ternctl: cannot read \(referenceConfig)")
                throw ExitCode(66)
            }
            print(ConfigReference.markdown(referenceTOML: String(decoding: bytes, as: UTF8.self)), terminator: "")
        }
    }

    struct Metrics: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every metric ternd serves: type, labels, meaning.")
        func run() { print(MetricsCatalog.reference(), terminator: "") }
    }

    struct RestartOnly: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "restart-only", abstract: "The config tables a reload may not change, one line.")
        func run() { print(ConfigSchema.restartOnlyTables.joined(separator: ", ")) }
    }
}
