// DPDK telemetry commands (`rte_telemetry_register_cmd`): `dpdk-telemetry.py -f PREFIX` asks
// `/tern/stats` or `/tern/vips` and gets a dict of counters. The callback runs on DPDK's telemetry
// thread, so it only asks the control thread (through `answer`, which may wait) and fills the
// reply; it never reads the data plane's state itself.

import CDPDK

public enum Telemetry {
    /// Asked with the command name; returns "name value" lines, or nil (the command fails).
    nonisolated(unsafe) static var answer: (@Sendable (String) -> [UInt8]?)?

    /// Registers each command with its help text. Call once, after `EAL.initialize`.
    public static func register(_ commands: [(name: String, help: String)], answer: @escaping @Sendable (String) -> [UInt8]?) {
        Telemetry.answer = answer
        for c in commands {
            _ = rte_telemetry_register_cmd(
                c.name,
                { command, _, data in
                    guard let command, let data, let lines = Telemetry.answer?(String(cString: command)) else { return -1 }
                    rte_tel_data_start_dict(data)
                    for line in String(decoding: lines, as: UTF8.self).split(separator: "\n") {
                        guard let space = line.lastIndex(of: " "), let value = UInt64(line[line.index(after: space)...]) else {
                            continue
                        }
                        _ = rte_tel_data_add_dict_u64(data, String(line[..<space]), value)
                    }
                    return 0
                }, c.help)
        }
    }
}
