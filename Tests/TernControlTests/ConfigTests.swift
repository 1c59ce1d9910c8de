import Testing

@testable import TernBalancing
@testable import TernControl
@testable import TernWire

let minimal = """
    [node]
    name = "t"
    tunnel_source_v4 = "10.0.0.10"

    [[port]]
    device = "net_ring0"
    gateway_mac = "02:00:00:00:00:fe"

    [[vip]]
    address = "192.0.2.10"
    port = 80
    protocol = "tcp"

    [[vip.backend]]
    address = "10.1.0.1"

    """

func problems(_ text: String) -> [String] {
    do {
        _ = try ConfigLoader.parse(text, file: "t.toml")
        return []
    } catch {
        return error.problems.map(\.description)
    }
}

@Suite struct ConfigTests {
    @Test func fillsDefaultsForOptionalKeys() throws {
        let c = try ConfigLoader.parse(minimal, file: "t.toml")
        #expect(c.dataplane == DataplaneConfig())
        #expect(c.tableSize == 65537 && c.ports[0].mtu == 1500 && c.ports[0].mac == nil)
        #expect(c.vips[0].backends[0].weight == 100 && c.vips[0].encapsulation == .ipip)
        #expect(c.summary == "1 VIPs, 1 backends, 1 port, 1 worker, table size 65537")
    }

    @Test func shippedConfigsAreValid() throws {
        for name in ["example", "reference"] {
            let c = try ConfigLoader.load(path: "configs/\(name).toml")
            #expect(!c.vips.isEmpty)
        }
    }

    @Test func syntaxErrorsNameTheLine() {
        do {
            _ = try ConfigLoader.parse(minimal + "\n[[vip]\n", file: "t.toml")
            Issue.record("accepted bad syntax")
        } catch {
            #expect(error.line == 17)
            #expect(error.description.hasPrefix("t.toml:17:6: expected ']]'"))
        }
    }

    @Test func semanticErrorsNameTheKeyPathAndAllAreReported() {
        let text = minimal.replacingOccurrences(of: "port = 80", with: "port = 70000")
            .replacingOccurrences(of: "address = \"10.1.0.1\"", with: "address = \"10.1.0.1\"\nweight = 65536")
        #expect(
            problems(text) == [
                "vip[0].port: must be in 0...65535, got 70000", "vip[0].backend[0].weight: must be in 0...65535, got 65536",
            ])
    }

    @Test func unknownKeysAreErrors() {
        #expect(problems(minimal + "\n[extra]\nx = 1\n") == ["extra: unknown key"])
        #expect(problems(minimal.replacingOccurrences(of: "name = \"t\"", with: "name = \"t\"\nnmae = 1")) == ["node.nmae: unknown key"])
    }

    @Test func wrongTypesSayWhatWasExpected() {
        #expect(problems(minimal.replacingOccurrences(of: "port = 80", with: "port = \"80\"")) == ["vip[0].port: wrong type: got string, expected integer"])
    }

    @Test func aVIPWithMoreBackendsThanSlotsIsRefused() {
        let backends = (1...8).map { "[[vip.backend]]\naddress = \"10.1.1.\($0)\"\n" }.joined()
        let text = minimal + backends + "[maglev]\ntable_size = 7\n"
        #expect(problems(text).contains("vip[0].backend: 9 backends need a maglev.table_size above 9"))
    }

    @Test func buildsTheSnapshotSpecFromTheConfig() throws {
        let c = try ConfigLoader.load(path: "configs/example.toml")
        let spec = c.snapshotSpec
        #expect(spec.services.count == c.vips.count && spec.tableSize == c.tableSize)
        #expect(spec.services[1].encapsulation == .gue && spec.services[1].guePort == 6080 && spec.services[1].port == 0)
        #expect(spec.tunnelSourceV6 == IPAddress("fc00::10"))
    }

    @Test func reloadsMayChangeVIPsButNotRestartOnlyKeys() throws {
        let running = try ConfigLoader.parse(minimal, file: "t.toml")
        let moreBackends = try ConfigLoader.parse(minimal + "[[vip.backend]]\naddress = \"10.1.0.2\"\n", file: "t.toml")
        #expect(running.restartOnlyChanges(to: moreBackends).isEmpty)
        let resized = try ConfigLoader.parse(
            minimal.replacingOccurrences(of: "[[port]]", with: "[dataplane]\nworkers = 2\n[[port]]")
                .replacingOccurrences(of: "gateway_mac = \"02:00:00:00:00:fe\"", with: "gateway_mac = \"02:00:00:00:00:fd\"\nmtu = 9000"),
            file: "t.toml")
        #expect(running.restartOnlyChanges(to: resized) == ["dataplane.workers", "port[0].gateway_mac", "port[0].mtu"])
    }

    @Test func parsesVIPSelectors() {
        #expect(VIPSelector("192.0.2.10:80/tcp") == VIPSelector("192.0.2.10:80/tcp"))
        #expect(VIPSelector("192.0.2.10:80/tcp")?.port == 80)
        #expect(VIPSelector("[2001:db8::1]:0/udp")?.address == IPAddress("2001:db8::1"))
        #expect(VIPSelector("192.0.2.10:80") == nil)
        #expect(VIPSelector("192.0.2.10:99999/tcp") == nil)
        #expect(VIPSelector("192.0.2.10:80/sctp") == nil)
    }
}
