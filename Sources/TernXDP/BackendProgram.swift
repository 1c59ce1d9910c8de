// Tern's backend program (ebpf/tern_backend.c) as `ternctl backend` handles it: loaded from its
// object file, its maps filled (GUE ports, the node's local addresses), attached to an interface
// in the driver or, where the driver has no XDP, as generic XDP; detached; its counters read.

import CXDP
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

public enum BackendProgram {
    /// Program names in the object (the kernel keeps 15 characters of a name).
    public static let programs = (plain: "tern_backend", frags: "tern_backend_frags")
    static let configMap = "tern_be_config", localMap = "tern_be_local", statsMap = "tern_be_stats"
    /// GUE ports the program takes (its `config`).
    public static let maxGUEPorts = 4
    /// Above this MTU a frame may span pages: drivers take only the multi-buffer variant.
    public static let fragsMTU = 3498
    /// The program's counters, in the order of its enum.
    public static let counterNames = [
        "decapsulated", "passed", "not_local", "hop_local", "hop_forwarded", "hop_reflected", "hop_unusable",
    ]

    /// Whether `name` (as the kernel reports it, 15 characters) is one of Tern's backend programs.
    public static func isTern(_ name: String) -> Bool { name.hasPrefix("tern_backend") }

    /// Loads `object`, fills its maps and attaches it to `interface` (replacing Tern's backend
    /// program if one is attached; any other program is refused). Returns what was done.
    public static func attach(interface: String, object: String, guePorts: [UInt16], addresses: [IPAddress]) throws(XDPError)
        -> String
    {
        let index = if_nametoindex(interface)
        guard index != 0 else { throw XDPError("no interface named \(interface)") }
        guard guePorts.count <= maxGUEPorts else { throw XDPError("at most \(maxGUEPorts) GUE ports") }
        let current = try XDPAttachment.attached(interface)
        if let current, !isTern(current.name) {
            throw XDPError(
                "\(interface) has another XDP program attached (\(current.name), id \(current.id)); detach it first "
                    + "(ip link set dev \(interface) xdp off) or attach Tern's on another interface")
        }
        var error: Int32 = 0
        guard let loaded = tern_bpf_object_open_load(object, &error) else {
            throw XDPError("cannot load \(object) (make install puts it in PREFIX/lib/tern; loading needs root)", code: error)
        }
        defer { tern_bpf_object_close(loaded) }
        try BPFMap(fd: tern_bpf_object_map_fd(loaded, localMap), keySize: 16, name: "\(object): \(localMap)").sync(
            Set(addresses.map(BackendProgram.key)), value: [1])
        let config = tern_bpf_object_map_fd(loaded, configMap)
        var ports = [UInt16](repeating: 0, count: maxGUEPorts)
        for (i, p) in guePorts.enumerated() { ports[i] = p.bigEndian }
        var zero: UInt32 = 0
        let rc = ports.withUnsafeBytes { tern_bpf_map_update(config, &zero, $0.baseAddress) }
        guard rc == 0 else { throw XDPError("setting the GUE ports", code: rc) }
        let frags = mtu(interface) > fragsMTU
        var generic: Int32 = 0
        let attached = tern_xdp_attach(loaded, frags ? programs.frags : programs.plain, index, current?.id ?? 0, &generic)
        guard attached == 0 else { throw XDPError("attaching to \(interface)", code: attached) }
        let gue = guePorts.isEmpty ? "no GUE port" : "GUE on UDP \(guePorts.map(String.init).joined(separator: ", "))"
        return "\(current == nil ? "attached" : "replaced Tern's backend program") on \(interface) ("
            + "\(generic != 0 ? "generic XDP: the driver has none" : "in the driver")\(frags ? ", multi-buffer" : ""); "
            + "\(gue); \(addresses.count) local addresses)"
    }

    /// A local address as the program's `tern_be_local` keys it: IPv6, or IPv4-mapped.
    static func key(_ a: IPAddress) -> [UInt8] { a.isV6 ? a.bytes : [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + a.bytes }

    /// Detaches Tern's backend program from `interface`; false when none was attached.
    public static func detach(interface: String) throws(XDPError) -> Bool {
        guard let current = try XDPAttachment.attached(interface) else { return false }
        guard isTern(current.name) else {
            throw XDPError("\(interface) has another XDP program (\(current.name)), not Tern's: left alone")
        }
        let rc = tern_xdp_detach_any(if_nametoindex(interface))
        guard rc == 0 else { throw XDPError("detaching from \(interface)", code: rc) }
        return true
    }

    /// Every interface with Tern's backend program, and its counters.
    public static func status() -> [(interface: String, counters: [(name: String, value: UInt64)])] {
        interfaces().compactMap { name in
            guard let current = try? XDPAttachment.attached(name), isTern(current.name) else { return nil }
            let index = if_nametoindex(name)
            let stats = tern_xdp_map_fd(index, statsMap)
            defer { tern_close_fd(stats) }
            let counters = BPFMap.percpuCounters(stats, names: counterNames)
            return (name, counters)
        }
    }

    /// This namespace's interfaces, by name.
    public static func interfaces() -> [String] {
        guard let list = if_nameindex() else { return [] }
        defer { if_freenameindex(list) }
        var names: [String] = []
        var p = list
        while p.pointee.if_index != 0 {
            names.append(String(cString: p.pointee.if_name))
            p += 1
        }
        return names
    }

    /// Every address of every interface here (the VIPs on lo among them).
    public static func localAddresses() -> [IPAddress] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0 else { return [] }
        defer { freeifaddrs(head) }
        var out = Set<IPAddress>()
        var p = head
        while let a = p {
            if let sa = a.pointee.ifa_addr {
                if Int32(sa.pointee.sa_family) == AF_INET {
                    let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        IPAddress(v4: UInt32(bigEndian: $0.pointee.sin_addr.s_addr))
                    }
                    out.insert(a)
                } else if Int32(sa.pointee.sa_family) == AF_INET6 {
                    var bytes = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                    out.insert(withUnsafeBytes(of: &bytes) { IPAddress(loadingFrom: $0.baseAddress!, offset: 0, isV6: true) })
                }
            }
            p = a.pointee.ifa_next
        }
        return out.sorted()
    }

    static func mtu(_ interface: String) -> Int {
        guard !interface.contains("/"), let f = fopen("/sys/class/net/\(interface)/mtu", "r") else { return 1500 }
        defer { fclose(f) }
        var line = [UInt8](repeating: 0, count: 16)
        let n = fread(&line, 1, 15, f)
        return Int(String(decoding: line[..<n], as: UTF8.self).filter(\.isNumber)) ?? 1500
    }
}
