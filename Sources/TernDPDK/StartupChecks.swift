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

    /// The kernel interfaces a config's ports read from: `iface=` of each `--vdev net_af_packet*`
    /// and each `af_xdp_interface`.
    public static func kernelPortInterfaces(_ ealArguments: [String], afXDP: [String]) -> [String] {
        var names: [String] = []
        for (i, a) in ealArguments.enumerated() {
            var spec: String?
            if a == "--vdev", i + 1 < ealArguments.count { spec = ealArguments[i + 1] }
            if a.hasPrefix("--vdev=") { spec = String(a.dropFirst("--vdev=".count)) }
            guard let spec, spec.hasPrefix("net_af_packet") else { continue }
            names += spec.split(separator: ",").filter { $0.hasPrefix("iface=") }.map { String($0.dropFirst(6)) }
        }
        return names + afXDP
    }

    /// A warning for each of `interfaces` that is a virtual pair (a veth: `iflink` names another
    /// interface) made by the kernel, not a NIC. A sender on this host (a namespace, a container)
    /// hands such a link packets whose TCP/UDP checksums the NIC was to finish (TX checksum
    /// offload, on by default on veth); Tern forwards them as they are and the backends drop
    /// them (TcpInCsumErrors), while Tern counts them forwarded. Only the sender can fix it.
    public static func checksumOffloadWarnings(_ interfaces: [String]) -> [String] {
        interfaces.compactMap { name in
            guard let index = sysfsNumber("/sys/class/net/\(name)/ifindex"),
                let link = sysfsNumber("/sys/class/net/\(name)/iflink"),
                link != index, access("/sys/devices/virtual/net/\(name)", F_OK) == 0
            else { return nil }
            return "\(name) is a virtual link (its peer is interface \(link)): a sender on this host must turn its TX checksum "
                + "offload off (ethtool -K PEER tx off, in the peer's namespace), or ternd forwards TCP and UDP packets "
                + "with unfinished checksums and backends drop them (TcpInCsumErrors); pings still work. Nothing to do "
                + "when it is off already or traffic comes from another machine"
        }
    }

    static func sysfsNumber(_ path: String) -> Int? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return nil }
        return Int(String(decoding: buffer[0..<n], as: UTF8.self).filter { $0.isNumber })
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
