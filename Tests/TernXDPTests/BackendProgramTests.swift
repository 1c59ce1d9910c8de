// Tern's backend program (ebpf/tern_backend.c, built by `make ebpf`) run by the kernel on frames
// (BPF_PROG_TEST_RUN): each encapsulation Tern emits is stripped, foreign traffic passes, and a
// second-chance packet goes on to its hop unless a local socket has its connection. Needs root.

import CXDP
import TernTestSupport
import TernWire
import TernXDP
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The object loaded (not attached), this host's addresses in its `tern_be_local`, GUE on 6080.
final class LoadedBackend {
    let object: UnsafeMutableRawPointer
    let program: Int32
    let stats: Int32
    static let node = a("10.0.0.2"), node6 = a("fd00::2"), lb = a("10.0.0.10"), lb6 = a("fd00::10")
    static let vip = a("127.0.0.1"), vip6 = a("::1")

    init() throws {
        let path = LoadedProgram.path.replacingOccurrences(of: "tern_xdp.o", with: "tern_backend.o")
        var fd: Int32 = -1
        guard let o = tern_bpf_object_load(path, &fd), fd >= 0 else {
            throw XDPTestError("cannot load \(path) (make ebpf builds it; loading needs root)")
        }
        object = o
        program = fd
        stats = tern_bpf_object_map_fd(o, "tern_be_stats")
        let locals = [LoadedBackend.node, LoadedBackend.node6, LoadedBackend.vip, LoadedBackend.vip6].map { x in
            x.isV6 ? x.bytes : [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + x.bytes
        }
        try BPFMap(fd: tern_bpf_object_map_fd(o, "tern_be_local"), keySize: 16, name: "tern_be_local").sync(
            Set(locals), value: [1])
        var ports: [UInt16] = [UInt16(6080).bigEndian, 0, 0, 0]
        var zero: UInt32 = 0
        precondition(tern_bpf_map_update(tern_bpf_object_map_fd(o, "tern_be_config"), &zero, &ports) == 0)
    }

    deinit { tern_bpf_object_close(object) }

    /// The verdict (XDP_PASS 2, XDP_TX 3), the frame after, and the counters that moved.
    func run(_ frame: [UInt8]) -> (verdict: UInt32, frame: [UInt8], counted: [String]) {
        let before = counters()
        var out = [UInt8](repeating: 0, count: frame.count + 256)
        var length: UInt32 = 0
        var verdict: UInt32 = 0
        let rc = frame.withUnsafeBytes {
            tern_bpf_test_run_out(program, $0.baseAddress, UInt32($0.count), &out, UInt32(out.count), &length, &verdict)
        }
        precondition(rc == 0, "BPF_PROG_TEST_RUN: \(rc)")
        let after = counters()
        let counted = zip(BackendProgram.counterNames, zip(before, after)).filter { $0.1.0 != $0.1.1 }.map(\.0)
        return (verdict, Array(out[..<Int(length)]), counted)
    }

    func counters() -> [Int64] { (0..<BackendProgram.counterNames.count).map { tern_bpf_percpu_sum(stats, UInt32($0)) } }
}

/// An inner TCP packet from a client to a VIP (an ACK unless `flags` says else).
func innerTCP(_ source: IPAddress, _ destination: IPAddress, _ sourcePort: UInt16, _ destinationPort: UInt16, flags: UInt8 = 0x10)
    -> [UInt8]
{
    let tcp = Frames.tcp(
        source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort, flags: flags)
    return destination.isV6
        ? Frames.ipv6(source: source, destination: destination, nextHeader: IPProtocol.tcp, payload: tcp)
        : Frames.ipv4(source: source, destination: destination, protocol: IPProtocol.tcp, payload: tcp)
}

/// `inner` in an outer header toward `to`: IP in IP, or GUE on 6080 (with a second hop).
func tunnel(_ inner: [UInt8], to: IPAddress, gue: Bool = false, hop: IPAddress? = nil) -> [UInt8] {
    let innerProtocol: UInt8 = inner[0] >> 4 == 6 ? 41 : 4
    let from = to.isV6 ? LoadedBackend.lb6 : LoadedBackend.lb
    var payload = inner
    var proto = innerProtocol
    if gue {
        var options: [UInt8] = []
        if let hop { options = [0x54, 1, hop.isV6 ? 6 : 4, 1] + hop.bytes }
        let header: [UInt8] = [UInt8(options.count / 4), innerProtocol, 0, hop == nil ? 0 : 1]
        payload = Frames.udp(
            source: from, destination: to, sourcePort: 40000, destinationPort: 6080, payload: header + options + inner)
        proto = IPProtocol.udp
    }
    return to.isV6
        ? Frames.ethernet(
            Frames.ipv6(source: from, destination: to, nextHeader: proto, payload: payload), etherType: EtherType.ipv6)
        : Frames.ethernet(
            Frames.ipv4(source: from, destination: to, protocol: proto, payload: payload), etherType: EtherType.ipv4)
}

/// A TCP connection over loopback: the accepted side's ports (a local socket the program finds).
struct LoopbackConnection {
    var client: Int32 = -1, server: Int32 = -1, listener: Int32 = -1
    var clientPort: UInt16 = 0, serverPort: UInt16 = 0

    init() {
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var size = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = bind(listener, $0, size) }
        }
        listen(listener, 1)
        withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(listener, $0, &size) }
        }
        serverPort = UInt16(bigEndian: address.sin_port)
        client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = connect(client, $0, size) }
        }
        server = accept(listener, nil, nil)
        var mine = sockaddr_in()
        withUnsafeMutablePointer(to: &mine) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(client, $0, &size) }
        }
        clientPort = UInt16(bigEndian: mine.sin_port)
    }

    func close() { for fd in [client, server, listener] { _ = Glibc.close(fd) } }
}

@Suite(.serialized) struct BackendProgramTests {
    @Test func everyEncapsulationTernEmitsIsStrippedForALocalInnerDestination() throws {
        let p = try LoadedBackend()
        let inner4 = innerTCP(a("203.0.113.7"), LoadedBackend.vip, 40000, 80)
        let inner6 = innerTCP(a("2001:db8:ff::7"), LoadedBackend.vip6, 40000, 80)
        for (name, frame, inner) in [
            ("4in4", tunnel(inner4, to: LoadedBackend.node), inner4), ("6in6", tunnel(inner6, to: LoadedBackend.node6), inner6),
            ("4in6", tunnel(inner4, to: LoadedBackend.node6), inner4), ("6in4", tunnel(inner6, to: LoadedBackend.node), inner6),
            ("GUE 4in4", tunnel(inner4, to: LoadedBackend.node, gue: true), inner4),
            ("GUE 6in6", tunnel(inner6, to: LoadedBackend.node6, gue: true), inner6),
        ] {
            let r = p.run(frame)
            #expect(r.verdict == 2 && r.counted == ["decapsulated"], "\(name): \(r.verdict) \(r.counted)")
            #expect(Array(r.frame.dropFirst(14)) == inner, "\(name): the frame after is not the inner packet")
            let etherType = UInt16(r.frame[12]) << 8 | UInt16(r.frame[13])
            #expect(etherType == (inner[0] >> 4 == 6 ? EtherType.ipv6 : EtherType.ipv4), "\(name)")
            #expect(Array(r.frame.prefix(12)) == Array(frame.prefix(12)), "\(name): MACs")
        }
    }

    @Test func foreignTrafficPassesUntouched() throws {
        let p = try LoadedBackend()
        let inner4 = innerTCP(a("203.0.113.7"), LoadedBackend.vip, 40000, 80)
        let plain = Frames.flow(source: a("203.0.113.7"), destination: LoadedBackend.node, sourcePort: 40000, destinationPort: 22)
        for (name, frame, counter) in [
            ("a plain TCP segment for this host", plain, "passed"),
            ("IP in IP for another host", tunnel(inner4, to: a("10.0.0.3")), "passed"),
            (
                "IP in IP whose inner destination is not local",
                tunnel(innerTCP(a("203.0.113.7"), a("192.0.2.99"), 1, 80), to: LoadedBackend.node), "not_local"
            ),
            (
                "UDP to another port",
                Frames.flow(
                    source: LoadedBackend.lb, destination: LoadedBackend.node, sourcePort: 1, destinationPort: 6081, udp: true),
                "passed"
            ),
            ("ARP", Frames.ethernet([UInt8](repeating: 0, count: 28), etherType: 0x0806), "passed"),
        ] {
            let r = p.run(frame)
            #expect(r.verdict == 2 && r.counted == [counter] && r.frame == frame, "\(name): \(r.verdict) \(r.counted)")
        }
    }

    @Test func aSecondChancePacketGoesToItsHopUnlessALocalSocketHasTheConnection() throws {
        let p = try LoadedBackend()
        let connection = LoopbackConnection()
        defer { connection.close() }
        let hop = a("10.0.0.3")
        let client = a("127.0.0.1")
        // The connection is here: delivered (decapsulated, hop ignored).
        let mine = innerTCP(client, LoadedBackend.vip, connection.clientPort, connection.serverPort)
        let delivered = p.run(tunnel(mine, to: LoadedBackend.node, gue: true, hop: hop))
        #expect(delivered.verdict == 2 && delivered.counted == ["decapsulated", "hop_local"], "\(delivered.counted)")
        #expect(Array(delivered.frame.dropFirst(14)) == mine)
        // Only a listener has the port (another client port): not this host's connection; the test
        // namespace does not forward, so it goes back to the MAC it came from.
        for (name, inner) in [
            ("no socket", innerTCP(client, LoadedBackend.vip, connection.clientPort, connection.serverPort &+ 1)),
            ("only a listener", innerTCP(client, LoadedBackend.vip, connection.clientPort &+ 1, connection.serverPort)),
        ] {
            let frame = tunnel(inner, to: LoadedBackend.node, gue: true, hop: hop)
            let r = p.run(frame)
            #expect(r.verdict == 3 && r.counted == ["hop_reflected"], "\(name): \(r.verdict) \(r.counted)")
            // Ethernet swapped; outer IPv4 from this node to the hop, 8 bytes shorter; GUE without options.
            #expect(Array(r.frame[0..<6]) == Array(frame[6..<12]) && Array(r.frame[6..<12]) == Array(frame[0..<6]), "\(name)")
            #expect(r.frame.count == frame.count - 8, "\(name)")
            #expect(Array(r.frame[26..<30]) == LoadedBackend.node.bytes && Array(r.frame[30..<34]) == hop.bytes, "\(name)")
            #expect(Array(r.frame[42..<46]) == [0, 4, 0, 0] && Array(r.frame.dropFirst(46)) == inner, "\(name)")
            #expect(r.frame[22] == frame[22] - 1, "\(name): TTL")
            let header = Array(r.frame[14..<34])
            #expect(
                header.withUnsafeBytes { Checksum.finish(Checksum.add($0.baseAddress!, length: 20, to: 0)) } == 0,
                "\(name): checksum")
        }
        // A SYN opens a connection here; a hop of the other family cannot be used: both delivered.
        let syn = innerTCP(client, LoadedBackend.vip, 1234, connection.serverPort, flags: 0x02)
        #expect(p.run(tunnel(syn, to: LoadedBackend.node, gue: true, hop: hop)).counted == ["decapsulated", "hop_local"])
        let other = innerTCP(client, LoadedBackend.vip, 1234, connection.serverPort &+ 1)
        #expect(
            p.run(tunnel(other, to: LoadedBackend.node, gue: true, hop: a("fd00::3"))).counted == [
                "decapsulated", "hop_unusable",
            ])
    }
}
