// Tern's XDP program (ebpf/tern_xdp.c) as ternd sees it on an AF_XDP port: DPDK's net_af_xdp
// loads and attaches it; ternd finds its `tern_vips` map through the interface and keeps it equal
// to the running config's VIPs (at start and after every reload), so the kernel gets everything
// else. The keys' layout is the program's `struct vip_key`.

import CXDP
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

/// What the XDP program redirects for one VIP: TCP/UDP to `port` (0: every port) of the address
/// or prefix, and ICMP and fragments for it.
public struct XDPVIP: Hashable, Sendable {
    public var address: IPAddress
    /// A CIDR VIP's prefix length; nil: the one address.
    public var prefixLength: Int?
    public var port: UInt16
    public var ipProtocol: UInt8

    public init(address: IPAddress, prefixLength: Int? = nil, port: UInt16, ipProtocol: UInt8) {
        self.address = address
        self.prefixLength = prefixLength
        self.port = port
        self.ipProtocol = ipProtocol
    }

    /// `struct vip_key`: prefixlen (host order), protocol, port (network order), the address as
    /// IPv6 (IPv4-mapped), a zero byte. The prefix covers protocol and port exactly.
    public static let keySize = 24

    static func key(protocol ipProtocol: UInt8, port: UInt16, address: IPAddress, prefixLength: Int?) -> [UInt8] {
        let mapped = address.isV6 ? address.bytes : [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + address.bytes
        let addressBits = (address.isV6 ? 0 : 96) + (prefixLength ?? address.bitWidth)
        let prefix = UInt32(24 + addressBits)
        var key = withUnsafeBytes(of: prefix.littleEndian) { Array($0) }
        key += [ipProtocol, UInt8(port >> 8), UInt8(port & 0xFF)] + mapped + [0]
        return key
    }

    /// The map's keys for these VIPs: one per (protocol, port, prefix), one per address or prefix.
    public static func keys(_ vips: [XDPVIP]) -> Set<[UInt8]> {
        var keys = Set<[UInt8]>()
        for v in vips {
            keys.insert(key(protocol: v.ipProtocol, port: v.port, address: v.address, prefixLength: v.prefixLength))
            keys.insert(key(protocol: 0, port: 0, address: v.address, prefixLength: v.prefixLength))
        }
        return keys
    }
}

public struct XDPError: Error, CustomStringConvertible {
    public var description: String
    init(_ what: String, code: Int32) { description = "\(what): \(String(cString: strerror(-code)))" }
    init(_ what: String) { description = what }
}

/// The XDP program on an interface, before ternd opens it.
public enum XDPAttachment {
    /// The program's name in ebpf/tern_xdp.c (the kernel keeps 15 characters).
    public static let ternProgram = "tern_xdp"

    /// The id and name of the program attached to `interface`; nil: none.
    public static func attached(_ interface: String) throws(XDPError) -> (id: UInt32, name: String)? {
        let index = if_nametoindex(interface)
        guard index != 0 else { throw XDPError("interface \(interface)", code: -ENODEV) }
        var id: UInt32 = 0
        var name = [CChar](repeating: 0, count: 16)
        let rc = tern_xdp_attached(index, &id, &name)
        guard rc == 0 else { throw XDPError("\(interface): asking for its XDP program", code: rc) }
        return id == 0 ? nil : (id, String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// Detaches Tern's program left by a ternd that did not stop (SIGKILL, a crash), which would
    /// keep the next one from attaching; nil when there was none. Another program is refused:
    /// it belongs to someone else.
    public static func clearStale(_ interface: String) throws(XDPError) -> String? {
        guard let (id, name) = try attached(interface) else { return nil }
        guard name == ternProgram else {
            throw XDPError(
                "\(interface) has another XDP program attached (\(name), id \(id)); AF_XDP mode attaches Tern's own: "
                    + "detach it (ip link set dev \(interface) xdp off) or use another interface")
        }
        let rc = tern_xdp_detach(if_nametoindex(interface))
        guard rc == 0 else {
            throw XDPError("\(interface): detaching the XDP program a previous ternd left (id \(id))", code: rc)
        }
        return "detached the XDP program a previous ternd left on \(interface) (id \(id))"
    }
}

/// A BPF map's keys, made equal to a set.
public struct BPFMap {
    public let fd: Int32
    public let keySize: Int
    /// For errors: which map of which interface.
    public let name: String

    public init(fd: Int32, keySize: Int, name: String) {
        self.fd = fd
        self.keySize = keySize
        self.name = name
    }

    /// Adds the missing keys (with `value`) first, then removes the rest.
    @discardableResult
    public func sync(_ wanted: Set<[UInt8]>, value: [UInt8]) throws(XDPError) -> (added: Int, removed: Int) {
        let present = try keys()
        var added = 0
        for key in wanted.subtracting(present) {
            let rc = key.withUnsafeBytes { k in value.withUnsafeBytes { tern_bpf_map_update(fd, k.baseAddress, $0.baseAddress) } }
            guard rc == 0 else { throw XDPError("\(name): adding a key", code: rc) }
            added += 1
        }
        var removed = 0
        for key in present.subtracting(wanted) {
            let rc = key.withUnsafeBytes { tern_bpf_map_delete(fd, $0.baseAddress) }
            guard rc == 0 || rc == -ENOENT else { throw XDPError("\(name): removing a key", code: rc) }
            removed += 1
        }
        return (added, removed)
    }

    /// A per-CPU array of 64-bit counters, summed over CPUs, named in slot order (0 where unreadable).
    public static func percpuCounters(_ fd: Int32, names: [String]) -> [(name: String, value: UInt64)] {
        names.enumerated().map { i, name in (name, fd >= 0 ? UInt64(max(0, tern_bpf_percpu_sum(fd, UInt32(i)))) : 0) }
    }

    /// Every key in the map.
    public func keys() throws(XDPError) -> Set<[UInt8]> {
        var keys = Set<[UInt8]>()
        var next = [UInt8](repeating: 0, count: keySize)
        var rc = tern_bpf_map_next_key(fd, nil, &next)
        while rc == 0 {
            keys.insert(next)
            let current = next
            rc = current.withUnsafeBytes { tern_bpf_map_next_key(fd, $0.baseAddress, &next) }
        }
        guard rc == -ENOENT else { throw XDPError("\(name): reading its keys", code: rc) }
        return keys
    }
}

/// The program's maps on one interface: `tern_vips` (kept equal to the config) and its counters.
public final class XDPFilter {
    public let interface: String
    let vips: Int32
    let stats: Int32

    /// The maps of the XDP program attached to `interface` (Tern's, loaded by net_af_xdp).
    public init(interface: String) throws(XDPError) {
        let index = if_nametoindex(interface)
        guard index != 0 else { throw XDPError("interface \(interface)", code: -ENODEV) }
        self.interface = interface
        let vips = tern_xdp_map_fd(index, "tern_vips")
        guard vips >= 0 else { throw XDPError("\(interface): no tern_vips map in its XDP program", code: vips) }
        let stats = tern_xdp_map_fd(index, "tern_xdp_stats")
        guard stats >= 0 else {
            tern_close_fd(vips)
            throw XDPError("\(interface): no tern_xdp_stats map in its XDP program", code: stats)
        }
        self.vips = vips
        self.stats = stats
    }

    /// Maps given directly (tests: a program object loaded, not attached).
    public init(interface: String, vipsMap: Int32, statsMap: Int32) {
        self.interface = interface
        self.vips = vipsMap
        self.stats = statsMap
    }

    deinit {
        tern_close_fd(vips)
        tern_close_fd(stats)
    }

    /// Makes `tern_vips` hold exactly `vips`' keys: adds the missing ones first (a VIP kept across
    /// a reload is never absent), then removes the rest. Returns how many were added and removed.
    @discardableResult
    public func sync(_ vips: [XDPVIP]) throws(XDPError) -> (added: Int, removed: Int) {
        try map.sync(XDPVIP.keys(vips), value: [1, 0, 0, 0])
    }

    /// Every key in `tern_vips`.
    public func keys() throws(XDPError) -> Set<[UInt8]> { try map.keys() }

    var map: BPFMap { BPFMap(fd: vips, keySize: XDPVIP.keySize, name: "\(interface): tern_vips") }

    /// The program's counters (summed over CPUs), in the order of its enum.
    public static let counterNames = ["redirected", "passed", "no_socket"]

    public var counters: [(name: String, value: UInt64)] { BPFMap.percpuCounters(stats, names: XDPFilter.counterNames) }
}
