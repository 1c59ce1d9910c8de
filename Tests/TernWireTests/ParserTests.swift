import Testing

@testable import TernTestSupport
@testable import TernWire

func parse(_ frame: [UInt8]) -> (ParseStatus, NetworkHeader, ParseStatus?, TransportHeader) {
    var net = NetworkHeader()
    var l4 = TransportHeader()
    return frame.withUnsafeBytes { p -> (ParseStatus, NetworkHeader, ParseStatus?, TransportHeader) in
        let base = p.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!
        let s = Parser.parseNetwork(base, length: p.count, into: &net)
        guard s == .ok, !net.isFragment else { return (s, net, nil, l4) }
        let t = Parser.parseTransport(base, net, into: &l4)
        return (s, net, t, l4)
    }
}

let client4 = IPAddress("198.51.100.7")!
let vip4 = IPAddress("192.0.2.10")!
let client6 = IPAddress("2001:db8:1::7")!
let vip6 = IPAddress("2001:db8::10")!

@Suite struct ParserTests {
    @Test func readsIPv4TCP() {
        let f = Frames.flow(source: client4, destination: vip4, sourcePort: 4000, destinationPort: 80, tos: 0x2E)
        let (s, net, t, l4) = parse(f)
        #expect(s == .ok && t == .ok)
        #expect(net.l3Offset == 14 && net.l4Offset == 34 && net.ipEnd == f.count)
        #expect(net.source == client4 && net.destination == vip4 && net.ipProtocol == IPProtocol.tcp)
        #expect(net.trafficClass == 0x2E && net.dontFragment && !net.isFragment)
        #expect(l4.sourcePort == 4000 && l4.destinationPort == 80)
    }

    @Test func honoursIPv4HeaderLengthAboveFive() {
        let tcp = Frames.tcp(source: client4, destination: vip4, sourcePort: 1, destinationPort: 80)
        let ip = Frames.ipv4(
            source: client4, destination: vip4, protocol: IPProtocol.tcp, payload: tcp, options: [1, 1, 1, 0, 1, 1, 1, 0])
        let (_, net, t, l4) = parse(Frames.ethernet(ip, etherType: EtherType.ipv4))
        #expect(net.l4Offset == 14 + 28 && t == .ok && l4.destinationPort == 80)
    }

    @Test func skipsOneVLANTagButNotTwo() {
        let tagged = Frames.flow(source: client4, destination: vip4, sourcePort: 1, destinationPort: 80, vlan: 100)
        #expect(parse(tagged).1.l3Offset == 18)
        var stacked = tagged
        stacked.insert(contentsOf: [0x81, 0x00, 0x00, 0x05], at: 12)
        #expect(parse(stacked).0 == .notIP)
    }

    @Test func ignoresEthernetPadding() {
        let f = Frames.flow(source: client4, destination: vip4, sourcePort: 1, destinationPort: 80)
        let (s, net, _, _) = parse(f + [0, 0, 0, 0, 0, 0])
        #expect(s == .ok && net.ipEnd == f.count)
    }

    @Test func walksIPv6ExtensionHeadersToTheTransportHeader() {
        let udp = Frames.udp(source: client6, destination: vip6, sourcePort: 5, destinationPort: 53)
        let ip = Frames.ipv6(
            source: client6, destination: vip6, nextHeader: IPProtocol.udp, payload: udp, trafficClass: 0xB8,
            extensions: [
                (IPProtocol.hopByHop, [1, 4, 0, 0, 0, 0]), (IPProtocol.routing, [0, 0, 0, 0, 0, 0]),
                (IPProtocol.destinationOptions, [1, 12] + [UInt8](repeating: 0, count: 12)),
            ])
        let (s, net, t, l4) = parse(Frames.ethernet(ip, etherType: EtherType.ipv6))
        #expect(s == .ok && t == .ok && !net.isFragment)
        #expect(net.ipProtocol == IPProtocol.udp && net.l4Offset == 14 + 40 + 8 + 8 + 16)
        #expect(net.trafficClass == 0xB8 && l4.destinationPort == 53)
    }

    @Test func recognisesFragments() {
        let ip4 = Frames.ipv4(
            source: client4, destination: vip4, protocol: IPProtocol.tcp, payload: [UInt8](repeating: 0, count: 20),
            moreFragments: true)
        #expect(parse(Frames.ethernet(ip4, etherType: EtherType.ipv4)).1.isFragment)
        let later = Frames.ipv4(
            source: client4, destination: vip4, protocol: IPProtocol.tcp, payload: [1, 2, 3], fragmentOffset: 8)
        #expect(parse(Frames.ethernet(later, etherType: EtherType.ipv4)).1.isFragment)
        let ip6 = Frames.ipv6(
            source: client6, destination: vip6, nextHeader: IPProtocol.tcp, payload: [UInt8](repeating: 0, count: 20),
            extensions: [(IPProtocol.fragment, [0, 0, 0, 0, 0, 1])])
        #expect(parse(Frames.ethernet(ip6, etherType: EtherType.ipv6)).1.isFragment)
    }

    @Test func callsLyingLengthsMalformed() {
        var f = Frames.flow(source: client4, destination: vip4, sourcePort: 1, destinationPort: 80)
        f[16] = 0x01  // total length 256+ > frame
        #expect(parse(f).0 == .malformed)
        var g = Frames.flow(source: client4, destination: vip4, sourcePort: 1, destinationPort: 80)
        g[14] = 0x44  // IHL 4
        #expect(parse(g).0 == .malformed)
        var h = Frames.flow(source: client4, destination: vip4, sourcePort: 1, destinationPort: 80)
        h[14 + 20 + 12] = 0x40  // TCP data offset 4
        #expect(parse(h).2 == .malformed)
        var u = Frames.flow(source: client4, destination: vip4, sourcePort: 1, destinationPort: 53, udp: true)
        u[14 + 20 + 5] = 50  // UDP length 50 > datagram
        #expect(parse(u).2 == .malformed)
    }

    @Test func everyTruncationIsMalformedNeverATrap() {
        let frames = [
            Frames.flow(source: client4, destination: vip4, sourcePort: 1, destinationPort: 80, payload: [1, 2, 3]),
            Frames.flow(source: client6, destination: vip6, sourcePort: 1, destinationPort: 53, udp: true, payload: [1]),
            Frames.flow(source: client4, destination: vip4, sourcePort: 1, destinationPort: 80, vlan: 9),
        ]
        for f in frames {
            #expect(parse(f).2 == .ok)
            for cut in 0..<f.count {
                let (s, _, t, _) = parse(Array(f[0..<cut]))
                #expect(s == .malformed || t == .malformed, "cut at \(cut) of \(f.count)")
            }
        }
    }
}
