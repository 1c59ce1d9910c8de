import Testing

@testable import TernBalancing
@testable import TernConfig
@testable import TernWire

@Suite struct CIDRVIPTests {
    func cidr(_ address: String) -> String {
        minimal.replacingOccurrences(of: "address = \"192.0.2.10\"", with: "address = \"\(address)\"")
    }

    @Test func everyAddressOfThePrefixFindsTheVIP() throws {
        let c = try ConfigLoader.parse(cidr("198.51.100.16/28"), file: "t.toml")
        let v = c.vips[0]
        #expect(v.prefixLength == 28 && v.addresses.count == 16)
        #expect(v.addresses.first == IPAddress("198.51.100.16") && v.addresses.last == IPAddress("198.51.100.31"))
        #expect(v.name == "198.51.100.16:80/tcp" && v.prefix == "198.51.100.16/28")
        let snapshot = ForwardingSnapshot(c.snapshotSpec, generation: 1)
        for last in 0...40 {
            let a = IPAddress("198.51.100.\(last)")!
            let inside = (16...31).contains(last)
            #expect(snapshot.findVIP(address: a, port: 80, ipProtocol: IPProtocol.tcp) == (inside ? 0 : -1))
            #expect(snapshot.vipAddressState(a) == (inside ? 1 : -1))
        }
        #expect(c.vip(matching: VIPSelector("198.51.100.20:80/tcp")!) == v)
    }

    @Test func ipv6PrefixesUpTo256Addresses() throws {
        let text = cidr("2001:db8::100/120").replacingOccurrences(
            of: "tunnel_source_v4", with: "tunnel_source_v6 = \"2001:db8::a\"\ntunnel_source_v4")
        let c = try ConfigLoader.parse(text, file: "t.toml")
        #expect(c.vips[0].addresses.count == 256 && c.vips[0].addresses.last == IPAddress("2001:db8::1ff"))
        #expect(c.vips[0].prefix == "2001:db8::100/120")
    }

    @Test func badPrefixesAreRefusedWithTheReason() {
        #expect(
            problems(cidr("198.51.100.0/23")) == [
                "vip[0].address: /23 is too wide: a CIDR VIP covers at most 256 addresses (/24)"
            ])
        #expect(
            problems(cidr("198.51.100.8/28")) == [
                "vip[0].address: 198.51.100.8/28 has host bits set: a CIDR VIP starts on its prefix boundary"
            ])
        #expect(problems(cidr("198.51.100.0/33")) == ["vip[0].address: not a prefix length: \"33\" (IPv4 takes 0-32)"])
        #expect(problems(cidr("198.51.100.0/-1")) == ["vip[0].address: not a prefix length: \"-1\" (IPv4 takes 0-32)"])
        #expect(problems(cidr("198.51.100.0/")) == ["vip[0].address: not a prefix length: \"\" (IPv4 takes 0-32)"])
    }

    @Test func aPrefixOverlappingAnotherVIPOrABackendIsRefused() {
        let second =
            "\n[[vip]]\naddress = \"198.51.100.5\"\nport = 80\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"10.1.0.2\"\n"
        #expect(
            problems(cidr("198.51.100.0/29") + second).contains { $0.contains("duplicate VIP 198.51.100.5:80/tcp (also vip[0])") }
        )
        #expect(problems(cidr("198.51.100.0/29") + second.replacingOccurrences(of: "port = 80", with: "port = 443")).isEmpty)
        let looped = cidr("10.1.0.0/29")
        #expect(problems(looped).contains { $0.contains("10.1.0.1 is a VIP address of this config (vip[0])") })
    }

    @Test func aSingleAddressIsItsOwnSlash32() throws {
        let c = try ConfigLoader.parse(minimal, file: "t.toml")
        #expect(
            c.vips[0].prefixLength == nil && c.vips[0].addresses == [IPAddress("192.0.2.10")!]
                && c.vips[0].prefix == "192.0.2.10/32")
        #expect(try ConfigLoader.parse(cidr("192.0.2.10/32"), file: "t.toml").vips[0].addresses == [IPAddress("192.0.2.10")!])
    }
}

@Suite struct QUICConfigTests {
    let udp = minimal.replacingOccurrences(
        of: "port = 80\nprotocol = \"tcp\"", with: "port = 443\nprotocol = \"udp\"\nquic = true"
    )
    .replacingOccurrences(of: "address = \"10.1.0.1\"", with: "address = \"10.1.0.1\"\nquic_server_id = 1024")

    @Test func serverIDsReachTheSnapshotSpecByAddress() throws {
        let c = try ConfigLoader.parse(udp + "[[vip.backend]]\naddress = \"10.1.0.2\"\n", file: "t.toml")
        #expect(c.vips[0].quic && c.vips[0].backends.map(\.quicServerID) == [1024, nil])
        let spec = c.snapshotSpec.services[0]
        #expect(spec.quic && spec.quicServerIDs == [IPAddress("10.1.0.1")!: 1024])
    }

    @Test func quicNeedsUDPAndServerIDsNeedQUICOnceEach() {
        #expect(
            problems(udp.replacingOccurrences(of: "protocol = \"udp\"", with: "protocol = \"tcp\"")).contains {
                $0.hasSuffix("vip[0].quic: QUIC runs over UDP: needs protocol = \"udp\"")
            })
        #expect(
            problems(udp.replacingOccurrences(of: "quic = true", with: "")).contains {
                $0.hasSuffix("vip[0].backend[0].quic_server_id: only on backends of a VIP with quic = true")
            })
        #expect(
            problems(udp + "[[vip.backend]]\naddress = \"10.1.0.2\"\nquic_server_id = 1024\n").contains {
                $0.hasSuffix("vip[0].backend[1].quic_server_id: 1024 is also backend[0]'s: a server id names one backend")
            })
        #expect(
            problems(udp.replacingOccurrences(of: "1024", with: "0")).contains {
                $0.contains("quic_server_id: must be in 1...4294967295")
            })
    }
}

@Suite struct VIPClampMSSConfigTests {
    let clamped = minimal.replacingOccurrences(
        of: "port = 80\nprotocol = \"tcp\"", with: "port = 80\nprotocol = \"tcp\"\nclamp_mss = true")

    @Test func aVIPsClampMSSReachesItsSnapshotSpecAndAReloadMayChangeIt() throws {
        let c = try ConfigLoader.parse(clamped, file: "t.toml")
        #expect(c.vips[0].clampMSS && c.snapshotSpec.services[0].clampMSS)
        let running = try ConfigLoader.parse(minimal, file: "t.toml")
        #expect(!running.snapshotSpec.services[0].clampMSS && running.restartOnlyChanges(to: c).isEmpty)
    }

    @Test func clampMSSNeedsTCP() {
        #expect(
            problems(clamped.replacingOccurrences(of: "protocol = \"tcp\"", with: "protocol = \"udp\"")).contains {
                $0.hasSuffix("vip[0].clamp_mss: MSS is a TCP option: needs protocol = \"tcp\"")
            })
    }
}
