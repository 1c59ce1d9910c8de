// What ternd checks before `rte_eal_init`, so that a failed start names its cause instead of a
// DPDK message that hides it ("rte_eal_init: Success", "no DPDK port named net_pcap0").

import CDPDK

#if canImport(Glibc)
    import Glibc
#endif

public enum StartupChecks {
    /// The `--file-prefix` an EAL argument list gives (DPDK's default is "rte").
    public static func filePrefix(_ ealArguments: [String]) -> String {
        var prefix = "rte"
        for (i, a) in ealArguments.enumerated() {
            if a == "--file-prefix", i + 1 < ealArguments.count { prefix = ealArguments[i + 1] }
            if a.hasPrefix("--file-prefix=") { prefix = String(a.dropFirst("--file-prefix=".count)) }
        }
        return prefix
    }

    /// A running DPDK primary process holds a write lock on `/var/run/dpdk/PREFIX/config`: its pid,
    /// if one does (`tern_lock_holder`). With `--no-shconf` no such file exists.
    public static func primaryHolding(prefix: String) -> Int32? {
        let pid = tern_lock_holder("/var/run/dpdk/\(prefix)/config")
        return pid > 0 ? pid : nil
    }

    /// Files a `--vdev` argument names that this process cannot read (`rx_pcap=`, `rx_iface=` is not a
    /// file): each with the reason, e.g. `net_pcap0: rx_pcap=in.pcap: No such file or directory`.
    public static func unreadableVdevFiles(_ ealArguments: [String]) -> [String] {
        var problems: [String] = []
        for (i, a) in ealArguments.enumerated() {
            var spec: String?
            if a == "--vdev", i + 1 < ealArguments.count { spec = ealArguments[i + 1] }
            if a.hasPrefix("--vdev=") { spec = String(a.dropFirst("--vdev=".count)) }
            guard let spec else { continue }
            let parts = spec.split(separator: ",")
            guard let name = parts.first else { continue }
            for kv in parts.dropFirst() where kv.hasPrefix("rx_pcap=") {
                let file = String(kv.dropFirst("rx_pcap=".count))
                if access(file, R_OK) != 0 {
                    problems.append("\(name): rx_pcap=\(file): \(String(cString: strerror(errno)))")
                }
            }
        }
        return problems
    }

    /// Removes EAL's runtime directory /var/run/dpdk/PREFIX (its files are flat: config,
    /// fbarrays, sockets) after `EAL.cleanup`: DPDK leaves it behind on every exit, with
    /// --no-shconf too. `opendir`, `unlink`, `rmdir`.
    public static func removeRuntimeDirectory(prefix: String) {
        guard !prefix.isEmpty, !prefix.contains("/"), prefix != "." && prefix != ".." else { return }
        let path = "/var/run/dpdk/\(prefix)"
        guard let dir = opendir(path) else { return }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { unlink("\(path)/\(name)") }
        }
        closedir(dir)
        rmdir(path)
    }
}
