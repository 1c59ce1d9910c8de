// Tern's XDP program (ebpf/tern_xdp.c, built by `make ebpf`) loaded with libbpf and run by the
// kernel on frames (BPF_PROG_TEST_RUN), with its VIP map filled by XDPFilter.sync. Needs root.

import CXDP
import TernTestSupport
import TernWire
import TernXDP
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The program object the build makes (`make ebpf`), loaded and not attached.
final class LoadedProgram {
    let object: UnsafeMutableRawPointer
    let program: Int32
    let filter: XDPFilter

    static let path: String = {
        let here = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        return "/\(here)/.build/lib/tern/tern_xdp.o"
    }()

    init() throws {
        var fd: Int32 = -1
        guard let o = tern_bpf_object_load(LoadedProgram.path, &fd), fd >= 0 else {
            throw XDPTestError("cannot load \(LoadedProgram.path) (make ebpf builds it; loading needs root)")
        }
        object = o
        program = fd
        filter = XDPFilter(
            interface: "test", vipsMap: dup(tern_bpf_object_map_fd(o, "tern_vips")),
            statsMap: dup(tern_bpf_object_map_fd(o, "tern_xdp_stats")))
    }

    deinit { tern_bpf_object_close(object) }

    /// What the program did with `frame`: "redirect" (a VIP's, though no socket is bound here, so it
    /// passes and counts `no_socket`) or "pass"; the verdict is XDP_PASS either way.
    func run(_ frame: [UInt8]) -> String {
        let before = filter.counters
        var verdict: UInt32 = 0
        let rc = frame.withUnsafeBytes { tern_bpf_test_run(program, $0.baseAddress, UInt32($0.count), &verdict) }
        precondition(rc == 0, "BPF_PROG_TEST_RUN: \(rc)")
        let after = filter.counters
        let changed = zip(before, after).filter { $0.1.value != $0.0.value }.map(\.0.name)
        return verdict == 2 && changed == ["no_socket"]
            ? "redirect" : verdict == 2 && changed == ["passed"] ? "pass" : "?\(verdict) \(changed)"
    }
}

struct XDPTestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func a(_ s: String) -> IPAddress { IPAddress(s)! }

let client4 = a("203.0.113.7")
let client6 = a("2001:db8:ff::7")

func tcp(_ to: String, _ port: UInt16, vlan: UInt16? = nil) -> [UInt8] {
    let d = a(to)
    return Frames.flow(source: d.isV6 ? client6 : client4, destination: d, sourcePort: 40000, destinationPort: port, vlan: vlan)
}

func udp(_ to: String, _ port: UInt16) -> [UInt8] {
    let d = a(to)
    return Frames.flow(source: d.isV6 ? client6 : client4, destination: d, sourcePort: 40000, destinationPort: port, udp: true)
}

func ping(_ to: String) -> [UInt8] {
    let d = a(to)
    let source = d.isV6 ? client6 : client4
    let echo = Frames.icmpEcho(source: source, destination: d)
    return d.isV6
        ? Frames.ethernet(
            Frames.ipv6(source: source, destination: d, nextHeader: IPProtocol.icmpv6, payload: echo), etherType: EtherType.ipv6)
        : Frames.ethernet(
            Frames.ipv4(source: source, destination: d, protocol: IPProtocol.icmp, payload: echo), etherType: EtherType.ipv4)
}

let vips = [
    XDPVIP(address: a("192.0.2.10"), port: 80, ipProtocol: IPProtocol.tcp),
    XDPVIP(address: a("2001:db8::10"), port: 0, ipProtocol: IPProtocol.udp),
    XDPVIP(address: a("198.51.100.0"), prefixLength: 28, port: 443, ipProtocol: IPProtocol.tcp),
]

@Suite(.serialized) struct XDPFilterTests {
    @Test func keyLayoutMatchesTheProgramsStruct() {
        let keys = XDPVIP.keys([vips[0]])
        #expect(keys.count == 2)
        #expect(keys.allSatisfy { $0.count == XDPVIP.keySize })
        let port =
            [UInt8](arrayLiteral: 152, 0, 0, 0, 6, 0, 80) + [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, 192, 0, 2, 10, 0]
        #expect(keys.contains(port))
        let prefix = XDPVIP.keys([vips[2]]).first { $0[4] == 6 }!
        #expect(prefix[0] == 24 + 96 + 28)
    }

    @Test func vipTrafficIsRedirectedAndEverythingElsePasses() throws {
        let p = try LoadedProgram()
        let sync = try p.filter.sync(vips)
        #expect(sync.added == 6 && sync.removed == 0)
        // For the data plane: the VIP's port, ICMP to the VIP, any UDP port of a port-0 VIP, a
        // CIDR VIP's addresses, tagged frames, fragments.
        #expect(p.run(tcp("192.0.2.10", 80)) == "redirect")
        #expect(p.run(tcp("192.0.2.10", 80, vlan: 7)) == "redirect")
        #expect(p.run(ping("192.0.2.10")) == "redirect")
        #expect(p.run(udp("2001:db8::10", 53)) == "redirect")
        #expect(p.run(udp("2001:db8::10", 9999)) == "redirect")
        #expect(p.run(ping("2001:db8::10")) == "redirect")
        #expect(p.run(tcp("198.51.100.7", 443)) == "redirect")
        let fragment = Frames.ethernet(
            Frames.ipv4(
                source: client4, destination: a("192.0.2.10"), protocol: IPProtocol.udp,
                payload: [UInt8](repeating: 1, count: 64),
                dontFragment: false, fragmentOffset: 8), etherType: EtherType.ipv4)
        #expect(p.run(fragment) == "redirect")
        let fragment6 = Frames.ethernet(
            Frames.ipv6(
                source: client6, destination: a("2001:db8::10"), nextHeader: IPProtocol.udp,
                payload: [UInt8](repeating: 1, count: 64),
                extensions: [(type: 44, body: [0, 8, 0, 0, 0, 1])]), etherType: EtherType.ipv6)
        #expect(p.run(fragment6) == "redirect")
        // For the kernel: other ports and protocols of a VIP, other addresses, ARP, runts.
        #expect(p.run(tcp("192.0.2.10", 22)) == "pass")
        #expect(p.run(udp("192.0.2.10", 80)) == "pass")
        #expect(p.run(tcp("2001:db8::10", 80)) == "pass")
        #expect(p.run(tcp("198.51.100.17", 443)) == "pass")
        #expect(p.run(tcp("10.0.0.2", 179)) == "pass")
        #expect(p.run(ping("10.0.0.2")) == "pass")
        #expect(p.run(Frames.ethernet([UInt8](repeating: 0, count: 28), etherType: 0x0806)) == "pass")
        #expect(p.run(Array(tcp("192.0.2.10", 80).prefix(36))) == "pass")
    }

    @Test func syncMakesTheMapEqualToTheConfig() throws {
        let p = try LoadedProgram()
        try p.filter.sync(vips)
        #expect(try p.filter.keys() == XDPVIP.keys(vips))
        let again = try p.filter.sync(vips)
        #expect(again.added == 0 && again.removed == 0)
        // A reload that drops the TCP VIP and moves the UDP one to port 53 only.
        let next = [XDPVIP(address: a("2001:db8::10"), port: 53, ipProtocol: IPProtocol.udp), vips[2]]
        let change = try p.filter.sync(next)
        #expect(change.added == 1 && change.removed == 3)
        #expect(try p.filter.keys() == XDPVIP.keys(next))
        #expect(p.run(tcp("192.0.2.10", 80)) == "pass")
        #expect(p.run(udp("2001:db8::10", 53)) == "redirect")
        #expect(p.run(udp("2001:db8::10", 54)) == "pass")
        try p.filter.sync([])
        #expect(try p.filter.keys().isEmpty)
    }
}
