// AF_XDP ports (`[[port]] af_xdp_interface`): ternd hot-plugs DPDK's net_af_xdp on a kernel
// interface with Tern's XDP program, which hands ternd only what the data plane serves. The kernel
// keeps the interface, its addresses and sockets (BGP, ssh, health checks) whatever ternd does.

import CDPDK

#if canImport(Glibc)
    import Glibc
#endif

public enum AFXDPPort {
    /// RX queues the kernel interface `name` has (each worker binds a socket to one), or nil when
    /// there is no such interface.
    public static func rxQueues(_ name: String) -> Int? {
        guard !name.contains("/"), let dir = opendir("/sys/class/net/\(name)/queues") else { return nil }
        defer { closedir(dir) }
        var n = 0
        while let entry = readdir(dir) {
            let entryName = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if entryName.hasPrefix("rx-") { n += 1 }
        }
        return n
    }

    /// Why `interface` cannot take `workers` sockets with `program`, or nil.
    public static func problem(interface: String, workers: Int, program: String) -> String? {
        guard let queues = rxQueues(interface) else { return "no interface named \(interface)" }
        if queues < workers {
            return "\(interface) has \(queues) RX queue\(queues == 1 ? "" : "s") and ternd runs \(workers) workers, one "
                + "socket per queue: raise its queues (ethtool -L \(interface) combined \(workers)) or lower dataplane.workers"
        }
        if access(program, R_OK) != 0 {
            return "cannot read Tern's XDP program \(program) (\(String(cString: strerror(errno)))): make install puts it in "
                + "PREFIX/lib/tern, or set dataplane.xdp_program"
        }
        return nil
    }

    /// Creates the port `device` on `interface`: sockets on queues 0..<workers, Tern's program
    /// attached by the driver (and detached when the port closes).
    public static func create(device: String, interface: String, workers: Int, program: String) throws(DPDKError) -> Port {
        let rc = rte_vdev_init(device, "iface=\(interface),start_queue=0,queue_count=\(workers),xdp_prog=\(program)")
        guard rc == 0 else {
            throw DPDKError(
                "cannot open \(interface) with AF_XDP (rte_vdev_init \(device); the driver's lines above say why)", code: rc)
        }
        return try Port(named: device)
    }
}
