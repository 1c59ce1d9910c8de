// The kernel's neighbour table over rtnetlink (an RTM_GETNEIGH dump), and a nudge that makes the
// kernel resolve an address. The only socket and byte-layout code of the neighbour watcher; the
// parser works on plain bytes so tests can feed it messages.

import TernWire

#if canImport(Glibc)
    import Glibc
#endif

public enum Netlink {
    /// One neighbour entry: interface, address, MAC (nil when the kernel has none) and NUD state.
    public struct Neighbor: Equatable, Sendable {
        public var interfaceIndex: Int32
        public var address: IPAddress
        public var mac: MACAddress?
        public var state: UInt16

        public init(interfaceIndex: Int32, address: IPAddress, mac: MACAddress?, state: UInt16) {
            self.interfaceIndex = interfaceIndex
            self.address = address
            self.mac = mac
            self.state = state
        }
    }

    /// NUD states (linux/neighbour.h).
    public enum State {
        public static let incomplete: UInt16 = 0x01
        public static let reachable: UInt16 = 0x02
        public static let stale: UInt16 = 0x04
        public static let delay: UInt16 = 0x08
        public static let probe: UInt16 = 0x10
        public static let failed: UInt16 = 0x20
        public static let noARP: UInt16 = 0x40
        public static let permanent: UInt16 = 0x80

        public static func name(_ s: UInt16) -> String {
            let names: [(UInt16, String)] = [
                (incomplete, "incomplete"), (reachable, "reachable"), (stale, "stale"), (delay, "delay"), (probe, "probe"),
                (failed, "failed"), (noARP, "noarp"), (permanent, "permanent"),
            ]
            return names.first { s & $0.0 != 0 }?.1 ?? "none"
        }
    }

    static let getNeighbors: UInt16 = 30  // RTM_GETNEIGH
    static let newNeighbor: UInt16 = 28  // RTM_NEWNEIGH
    static let done: UInt16 = 3  // NLMSG_DONE
    static let error: UInt16 = 2  // NLMSG_ERROR

    /// Every neighbour entry of both families, or an error text.
    public static func neighbors() -> Result<[Neighbor], NetlinkError> {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)  // NETLINK_ROUTE
        guard fd >= 0 else { return .failure(NetlinkError("socket(AF_NETLINK): \(String(cString: strerror(errno)))")) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // nlmsghdr (16 bytes) + ndmsg (12 bytes): family AF_UNSPEC, every interface.
        var request = [UInt8](repeating: 0, count: 28)
        put32(&request, 0, 28)
        put16(&request, 4, getNeighbors)
        put16(&request, 6, 0x0001 | 0x0300)  // NLM_F_REQUEST | NLM_F_DUMP
        put32(&request, 8, 1)
        guard send(fd, request, request.count, 0) == request.count else {
            return .failure(NetlinkError("netlink send: \(String(cString: strerror(errno)))"))
        }
        var entries: [Neighbor] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { return .failure(NetlinkError("netlink recv: \(String(cString: strerror(errno)))")) }
            let part = parse(Array(buffer[0..<n]))
            entries += part.neighbors
            if let e = part.error { return .failure(NetlinkError("RTM_GETNEIGH: \(String(cString: strerror(e)))")) }
            if part.done { return .success(entries) }
        }
    }

    /// Neighbour entries in a buffer of netlink messages; `done` at NLMSG_DONE, `error` (an errno)
    /// at an NLMSG_ERROR other than an acknowledgement. Malformed lengths end the parse.
    public static func parse(_ b: [UInt8]) -> (neighbors: [Neighbor], done: Bool, error: Int32?) {
        var out: [Neighbor] = []
        var offset = 0
        while offset + 16 <= b.count {
            let length = Int(get32(b, offset))
            let type = get16(b, offset + 4)
            guard length >= 16, offset + length <= b.count else { break }
            switch type {
            case done: return (out, true, nil)
            case error:
                let code = length >= 20 ? -Int32(bitPattern: get32(b, offset + 16)) : 0
                if code != 0 { return (out, true, code) }
            case newNeighbor where length >= 28:
                if let n = neighbor(b, offset + 16, end: offset + length) { out.append(n) }
            default: break
            }
            offset += (length + 3) & ~3
        }
        return (out, false, nil)
    }

    /// An ndmsg at `o` and its attributes up to `end`: NDA_DST (1) and NDA_LLADDR (2).
    static func neighbor(_ b: [UInt8], _ o: Int, end: Int) -> Neighbor? {
        let family = Int32(b[o])
        let index = Int32(bitPattern: get32(b, o + 4))
        let state = get16(b, o + 8)
        var address: IPAddress?
        var mac: MACAddress?
        var a = o + 12
        while a + 4 <= end {
            let length = Int(get16(b, a))
            let kind = get16(b, a + 2)
            guard length >= 4, a + length <= end else { break }
            let value = Array(b[(a + 4)..<(a + length)])
            if kind == 1 && family == AF_INET && value.count == 4 {
                address = IPAddress(v4: value.reduce(0) { $0 << 8 | UInt32($1) })
            } else if kind == 1 && family == AF_INET6 && value.count == 16 {
                let high = value[0..<8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                let low = value[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                address = IPAddress(high: high, low: low, isV6: true)
            } else if kind == 2 && value.count == 6 {
                mac = MACAddress(value: value.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            }
            a += (length + 3) & ~3
        }
        return address.map { Neighbor(interfaceIndex: index, address: $0, mac: mac, state: state) }
    }

    /// Makes the kernel resolve `address` on `interface`: an empty UDP datagram to its discard
    /// port through a socket bound to that interface (the kernel sends ARP or ND for the next hop).
    public static func nudge(_ address: IPAddress, interface: String) -> NetlinkError? {
        let fd = socket(address.isV6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return NetlinkError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var name = Array(interface.utf8CString)
        guard setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, &name, socklen_t(name.count)) == 0 else {
            return NetlinkError("SO_BINDTODEVICE \(interface): \(String(cString: strerror(errno)))")
        }
        var (storage, length) = socketAddress(address, port: 9)
        let sent = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, nil, 0, Int32(MSG_DONTWAIT), $0, length) }
        }
        return sent < 0 ? NetlinkError("sendto \(address) on \(interface): \(String(cString: strerror(errno)))") : nil
    }

    /// A sockaddr_in or sockaddr_in6 for `address` and `port`, and its length.
    public static func socketAddress(_ address: IPAddress, port: UInt16) -> (sockaddr_storage, socklen_t) {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            raw.storeBytes(of: sa_family_t(address.isV6 ? AF_INET6 : AF_INET), as: sa_family_t.self)
            raw.storeBytes(of: port.bigEndian, toByteOffset: 2, as: UInt16.self)
            let at = address.isV6 ? 8 : 4  // sin6_addr after sin6_flowinfo; sin_addr after sin_port
            raw[at..<(at + address.bytes.count)].copyBytes(from: address.bytes)
        }
        return (storage, socklen_t(address.isV6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size))
    }

    static func put16(_ b: inout [UInt8], _ o: Int, _ v: UInt16) {
        withUnsafeBytes(of: v.littleEndian) { b.replaceSubrange(o..<o + 2, with: $0) }
    }
    static func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { b.replaceSubrange(o..<o + 4, with: $0) }
    }
    static func get16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
    static func get32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(get16(b, o)) | UInt32(get16(b, o + 2)) << 16 }
}

public struct NetlinkError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
