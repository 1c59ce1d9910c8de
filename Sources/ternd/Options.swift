// ternd's own options (after EAL's, behind `--`).

import Logging
import TernConfig

struct UsageError: Error {
    /// Empty for `--help` and `--version`.
    var message: String
    var version = false
}

struct Options {
    var config = ""
    var statsJSON: String? = nil
    /// Stop gracefully once no packet arrived for this many seconds (pcap replay, demos).
    var stopWhenIdleSeconds: Double? = nil
    /// Sleep this long after 1024 empty polls (0: busy-poll, the default).
    var idleSleepMicroseconds: UInt32 = 0
    var logLevel: Logger.Level = .info

    static let usage = """
        usage: ternd [EAL options] -- --config FILE [--stats-json FILE] [--stop-when-idle SECONDS] [--idle-sleep-us N]
                                      [--log-level LEVEL]
               ternd --help | --version

          --config FILE            Tern TOML config (ternctl check validates it)
          --stats-json FILE        also write the final counters (the JSON line printed on exit) to FILE
          --stop-when-idle SECONDS stop gracefully once no packet arrived for SECONDS (pcap replay)
          --idle-sleep-us N        sleep N microseconds after 1024 empty polls (default 0: busy-poll)
          --log-level LEVEL        trace, debug, info (default), notice, warning, error, critical; every
                                   line starts "ternd: " (and "<N>" syslog priorities under systemd)

        Signals: SIGHUP reloads the config (restart-only: \(ConfigSchema.restartOnlyTables.joined(separator: ", ")));
        SIGTERM or SIGINT stop the workers, flush TX and print the final counters as one JSON line;
        other signals that would end ternd (SIGUSR1, SIGQUIT, SIGALRM, SIGXCPU, real-time...) are
        logged and ignored. `ternctl status|reload|drain|show` talk to a running ternd over
        [control] socket (default /run/tern/ternd.sock).

        EAL examples:
          virtual devices:  ternd -l 0-1 --no-huge -m 512 --no-pci --file-prefix tern \\
                              --vdev net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap -- --config configs/example.toml
          a real NIC:       ternd -l 0-2 -a 0000:3b:00.0 -- --config /etc/tern/tern.toml
                            (hugepages reserved, the NIC bound to vfio-pci; [[port]].device = "0000:3b:00.0")
        Exit status: 0 after a clean stop, 78 config error, 64 usage error, 1 DPDK start-up failure.
        """

    /// Parses the arguments after `--`.
    static func parse(_ args: [String]) -> Result<Options, UsageError> {
        var o = Options()
        var i = 0
        func value() -> String? {
            i += 1
            return i < args.count ? args[i] : nil
        }
        while i < args.count {
            switch args[i] {
            case "--config":
                guard let v = value() else { return .failure(UsageError(message: "--config needs a file")) }
                o.config = v
            case "--stats-json":
                guard let v = value() else { return .failure(UsageError(message: "--stats-json needs a file")) }
                o.statsJSON = v
            case "--stop-when-idle":
                guard let v = value(), let s = Double(v), s > 0 else {
                    return .failure(UsageError(message: "--stop-when-idle needs seconds > 0"))
                }
                o.stopWhenIdleSeconds = s
            case "--idle-sleep-us":
                guard let v = value(), let n = UInt32(v) else {
                    return .failure(UsageError(message: "--idle-sleep-us needs a number"))
                }
                o.idleSleepMicroseconds = n
            case "--log-level":
                guard let v = value(), let level = Logger.Level(rawValue: v) else {
                    return .failure(
                        UsageError(message: "--log-level needs trace, debug, info, notice, warning, error or critical"))
                }
                o.logLevel = level
            case "-h", "--help":
                return .failure(UsageError(message: ""))
            case "--version":
                return .failure(UsageError(message: "", version: true))
            default:
                return .failure(UsageError(message: "unknown option \(args[i])"))
            }
            i += 1
        }
        if o.config.isEmpty { return .failure(UsageError(message: "--config is required")) }
        return .success(o)
    }
}
