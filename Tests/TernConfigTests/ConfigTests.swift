import Foundation
import Testing

@testable import TernBalancing
@testable import TernConfig
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
        #expect(
            problems(minimal.replacingOccurrences(of: "name = \"t\"", with: "name = \"t\"\nnmae = 1")) == [
                "node.nmae: unknown key"
            ])
    }

    @Test func wrongTypesSayWhatWasExpected() {
        #expect(
            problems(minimal.replacingOccurrences(of: "port = 80", with: "port = \"80\"")) == [
                "vip[0].port: wrong type: got string, expected integer"
            ])
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
                .replacingOccurrences(
                    of: "gateway_mac = \"02:00:00:00:00:fe\"", with: "gateway_mac = \"02:00:00:00:00:fd\"\nmtu = 9000"),
            file: "t.toml")
        #expect(running.restartOnlyChanges(to: resized) == ["dataplane.workers", "port[0].gateway_mac", "port[0].mtu"])
        // The same MAC written in capitals is no change; a second port is.
        let capitals = try ConfigLoader.parse(minimal.replacingOccurrences(of: "00:fe", with: "00:FE"), file: "t.toml")
        #expect(running.restartOnlyChanges(to: capitals).isEmpty)
        let twoPorts = try ConfigLoader.parse(
            minimal.replacingOccurrences(
                of: "[[vip]]", with: "[[port]]\ndevice = \"net_ring1\"\ngateway_mac = \"02:00:00:00:00:fe\"\n[[vip]]"),
            file: "t.toml")
        #expect(running.restartOnlyChanges(to: twoPorts).first == "port[1].device")
    }

    @Test func parsesVIPSelectors() {
        #expect(VIPSelector("192.0.2.10:80/tcp") == VIPSelector("192.0.2.10:80/tcp"))
        #expect(VIPSelector("192.0.2.10:80/tcp")?.port == 80)
        #expect(VIPSelector("[2001:db8::1]:0/udp")?.address == IPAddress("2001:db8::1"))
        #expect(VIPSelector("192.0.2.10:80") == nil)
        #expect(VIPSelector("192.0.2.10:99999/tcp") == nil)
        #expect(VIPSelector("192.0.2.10:80/sctp") == nil)
    }

    @Test func aVIPWithMoreBackendsThanMaglevCanNumberIsRefusedNotTrapped() {
        // 65,535 backends in one VIP once passed check and hit Maglev's precondition (SIGILL).
        let backends = (0..<65535).map {
            "[[vip.backend]]\naddress = \"10.\(1 + $0 / 65536).\($0 / 256 % 256).\($0 % 256 + 0)\"\n"
        }
        let text = minimal.replacingOccurrences(of: "[[vip.backend]]\naddress = \"10.1.0.1\"\n", with: "") + backends.joined()
        let found = problems(text)
        #expect(found.contains("vip[0].backend: 65535 backends; at most 16384 per VIP"))
    }

    @Test func aGUEPortCoveredByAnotherUDPVIPIsRefusedUnlessAllowed() {
        let gue = """
            [[vip]]
            address = "192.0.2.10"
            port = 0
            protocol = "tcp"
            encap = "gue"
            gue_port = 6080
            [[vip.backend]]
            address = "10.1.0.2"

            [[vip]]
            address = "192.0.2.10"
            port = 6080
            protocol = "udp"
            %ALLOW%
            [[vip.backend]]
            address = "10.1.0.3"

            """
        let refused = problems(minimal + gue.replacingOccurrences(of: "%ALLOW%", with: ""))
        #expect(refused.count == 1 && refused[0].hasPrefix("vip[2].port: 192.0.2.10:6080/udp covers UDP port 6080"))
        #expect(problems(minimal + gue.replacingOccurrences(of: "%ALLOW%", with: "allow_gue_port_overlap = true")).isEmpty)
        // A port-0 UDP GUE VIP covers its own gue_port: the data plane drops that (gue_in_gue).
        let own =
            minimal + "[[vip]]\naddress = \"192.0.2.11\"\nport = 0\nprotocol = \"udp\"\nencap = \"gue\"\ngue_port = 6080\n"
            + "[[vip.backend]]\naddress = \"10.1.0.2\"\n"
        #expect(problems(own).isEmpty)
    }

    @Test func everyProblemNamesItsLine() throws {
        let text = minimal.replacingOccurrences(of: "port = 80", with: "port = 70000") + "[extra]\n"
        do {
            _ = try ConfigLoader.parse(text, file: "t.toml")
            Issue.record("accepted")
        } catch {
            #expect(error.lines == ["t.toml:16: extra: unknown key", "t.toml:11: vip[0].port: must be in 0...65535, got 70000"])
        }
    }
}

@Suite struct ReferenceConfigTests {
    /// Every key of the schema appears in configs/reference.toml, set or commented out, in its
    /// table; the comments above an integer key state its range and default as the schema has
    /// them, and a table with restart-only keys says "Restart-only".
    @Test func theReferenceConfigDocumentsEveryKeyAsTheSchemaDefinesIt() throws {
        let text = try String(contentsOfFile: "configs/reference.toml", encoding: .utf8)
        let (seen, tableComments) = ConfigReference.descriptions(of: text)
        for key in ConfigSchema.all where key.kind != .table && key.kind != .tables {
            guard let doc = seen[key.path] else {
                Issue.record("configs/reference.toml does not document \(key.path)")
                continue
            }
            if let r = key.range {
                #expect(doc.contains("\(r.lowerBound)-\(r.upperBound)"), "\(key.path): range \(r) not in: \(doc)")
            }
            if let d = key.defaultValue {
                #expect(doc.contains("default \(d)"), "\(key.path): default \(d) not in: \(doc)")
            }
            if key.restartOnly {
                #expect(tableComments[key.table]?.contains("Restart-only") == true, "[\(key.table)] is not marked Restart-only")
            }
        }
    }

    /// The generated reference (docs/config-reference.md) has a row for every key, with the
    /// comment that documents it, and lists the restart-only tables.
    @Test func theGeneratedReferenceHasEveryKeyAndItsMeaning() throws {
        let md = ConfigReference.markdown(referenceTOML: try String(contentsOfFile: "configs/reference.toml", encoding: .utf8))
        for key in ConfigSchema.all where key.kind != .table && key.kind != .tables {
            #expect(md.contains("| `\(key.name)` | \(key.kind) |"), "\(key.path)")
        }
        #expect(
            md.contains(
                "| `flow_table_entries` | integer | 1024-268435456 | 1048576 | restart only | Flow-table entries per worker"))
        #expect(md.contains("Restart-only tables: [control], [metrics], [dataplane], [[port]], [icmp], [fleet]"))
    }

    /// The reload diff compares every restart-only key (none forgotten by the validator).
    @Test func everyRestartOnlyKeyIsComparedOnReload() throws {
        let c = try ConfigLoader.load(path: "configs/reference.toml")
        let compared = Set(c.restartOnly.map { $0.path.replacingOccurrences(of: "[0]", with: "") })
        #expect(compared == Set(ConfigSchema.all.filter(\.restartOnly).map(\.path)))
    }
}

@Suite struct HostPathKeyTests {
    let port = "gateway_mac = \"02:00:00:00:00:fe\"\n"

    @Test func aLearnedGatewayNeedsAHostInterfaceAndOneOfTheTwoGatewayKeysIsRequired() throws {
        let learned = minimal.replacingOccurrences(of: port, with: "gateway = \"10.0.0.1\"\nhost_interface = \"tern0\"\n")
        let c = try ConfigLoader.parse(learned, file: "t.toml")
        #expect(c.ports[0].learnsGateway && c.ports[0].gateway == IPAddress("10.0.0.1") && c.ports[0].hostInterface == "tern0")
        #expect(
            problems(minimal.replacingOccurrences(of: port, with: "gateway = \"10.0.0.1\"\n"))
                == [
                    "port[0].gateway: needs host_interface (or an af_xdp_interface): the next hop is resolved through the host's neighbour table on it"
                ])
        #expect(
            problems(minimal.replacingOccurrences(of: port, with: ""))
                == ["port[0]: needs gateway_mac (the next hop's MAC) or gateway (its address, resolved on host_interface)"])
        // Both: the configured MAC wins, nothing is learned.
        let both = try ConfigLoader.parse(
            minimal.replacingOccurrences(of: port, with: port + "gateway = \"10.0.0.1\"\n"), file: "t.toml")
        #expect(!both.ports[0].learnsGateway)
    }

    @Test func hostInterfaceNamesAreLinuxNamesDPDKCanCarry() {
        for bad in ["", "a,b", "x=y", "sixteen-chars-xx", "é", "a b", ".."] {
            let text = minimal.replacingOccurrences(of: port, with: port + "host_interface = \"\(bad)\"\n")
            #expect(problems(text).first?.contains("port[0].host_interface: must be 1 to 15") == true, "\(bad)")
        }
        #expect(problems(minimal.replacingOccurrences(of: port, with: port + "host_interface = \"tern-0.v_1\"\n")).isEmpty)
    }
}

@Suite struct SecondChanceKeyTests {
    let vip = "protocol = \"tcp\"\n"

    @Test func secondChanceIsOnForGUETCPVIPsAndNotedWhereItCannotWork() throws {
        let gue = try ConfigLoader.parse(
            minimal.replacingOccurrences(of: vip, with: vip + "encap = \"gue\"\ngue_port = 6080\n"), file: "t.toml")
        #expect(gue.vips[0].secondChance && gue.snapshotSpec.services[0].secondChance && gue.notes.isEmpty)
        let off = try ConfigLoader.parse(
            minimal.replacingOccurrences(of: vip, with: vip + "encap = \"gue\"\ngue_port = 6080\nsecond_chance = false\n"),
            file: "t.toml")
        #expect(!off.vips[0].secondChance)
        let ipip = try ConfigLoader.parse(minimal, file: "t.toml")
        #expect(!ipip.vips[0].secondChance && ipip.notes.isEmpty)
        let asked = try ConfigLoader.parse(
            minimal.replacingOccurrences(of: vip, with: vip + "second_chance = true\n"), file: "t.toml")
        #expect(!asked.vips[0].secondChance)
        #expect(asked.notes == ["vip[0].second_chance: only GUE TCP VIPs carry a second hop (IP in IP has no room for it): off"])
    }
}

@Suite struct AFXDPKeyTests {
    let device = "device = \"net_ring0\"\n"

    @Test func anAFXDPPortNamesItsInterfaceInsteadOfADeviceAndLearnsItsGatewayThere() throws {
        let text = minimal.replacingOccurrences(
            of: device + "gateway_mac = \"02:00:00:00:00:fe\"\n", with: "af_xdp_interface = \"eth1\"\ngateway = \"10.0.0.1\"\n")
        let c = try ConfigLoader.parse(text, file: "t.toml")
        #expect(c.ports[0].device == "net_af_xdp_eth1" && c.ports[0].afXDPInterface == "eth1")
        #expect(c.ports[0].learnsGateway && c.ports[0].kernelInterface == "eth1")
        #expect(c.dataplane.xdpProgram == nil)
    }

    @Test func aPortNeedsExactlyOneOfDeviceAndAFXDPInterfaceAndNoHostInterfaceBeside() {
        #expect(
            problems(minimal.replacingOccurrences(of: device, with: ""))
                == ["port[0]: needs device (a DPDK device) or af_xdp_interface (a kernel interface ternd opens with AF_XDP)"])
        #expect(
            problems(minimal.replacingOccurrences(of: device, with: device + "af_xdp_interface = \"eth1\"\n"))
                == ["port[0].af_xdp_interface: set device or af_xdp_interface, not both (ternd creates the AF_XDP port)"])
        let both = problems(
            minimal.replacingOccurrences(of: device, with: "af_xdp_interface = \"eth1\"\nhost_interface = \"tern0\"\n"))
        #expect(both.count == 1 && both[0].hasPrefix("port[0].host_interface: not with af_xdp_interface"))
        #expect(
            problems(minimal.replacingOccurrences(of: device, with: "af_xdp_interface = \"a,b\"\n")).first?.hasPrefix(
                "port[0].af_xdp_interface: must be 1 to 15") == true)
        #expect(
            problems(
                minimal.replacingOccurrences(of: "[[port]]\n", with: "[dataplane]\nxdp_program = \"tern_xdp.o\"\n[[port]]\n"))
                == ["dataplane.xdp_program: must be an absolute file path, got \"tern_xdp.o\""])
    }

    @Test func theDefaultXDPProgramIsLibTernBesideTheBinDirectory() {
        #expect(DataplaneConfig.defaultXDPProgram(executable: "/usr/local/bin/ternd") == "/usr/local/lib/tern/tern_xdp.o")
        #expect(DataplaneConfig.defaultXDPProgram(executable: ".build/debug/ternd") == ".build/lib/tern/tern_xdp.o")
        #expect(DataplaneConfig.defaultXDPProgram(executable: "./ternd") == "./../lib/tern/tern_xdp.o")
    }
}

@Suite struct ListenerKeyTests {
    @Test func metricsListenTakesHostAndPortAndIsRestartOnly() throws {
        let c = try ConfigLoader.parse("[metrics]\nlisten = \"[::1]:9108\"\n" + minimal, file: "t.toml")
        #expect(c.metrics == MetricsConfig(host: "::1", port: 9108))
        #expect(try ConfigLoader.parse(minimal, file: "t.toml").metrics == nil)
        for bad in ["localhost:9108", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000"] {
            #expect(problems("[metrics]\nlisten = \"\(bad)\"\n" + minimal).first?.hasPrefix("metrics.listen: ") == true, "\(bad)")
        }
        let moved = try ConfigLoader.parse(
            "[metrics]\nlisten = \"127.0.0.1:9109\"\n[control]\nsocket = \"/tmp/x.sock\"\n" + minimal, file: "t.toml")
        #expect(c.restartOnlyChanges(to: moved) == ["control.socket", "metrics.listen"])
        #expect(problems("[control]\nsocket = \"relative.sock\"\n" + minimal).first?.hasPrefix("control.socket: ") == true)
    }

    @Test func theControlSocketIsFoundInAFileWhoseOtherKeysAreBroken() throws {
        let path = "/tmp/tern-socket-key-\(getpid()).toml"
        defer { unlink(path) }
        for (text, socket) in [
            ("[control]\nsocket = \"/run/tern/b.sock\"\n[node]\nname = 5\n", "/run/tern/b.sock"),
            ("[node]\nname = \"x\"\n", ControlConfig.defaultSocket), ("not toml [", ControlConfig.defaultSocket),
        ] {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            #expect(try ConfigLoader.controlSocket(path: path) == socket)
        }
    }
}

@Suite struct MemoryBudgetTests {
    func config(workers: Int, entries: Int, vips: Int = 1, tableSize: Int = 65537) throws -> TernConfig {
        var c = try ConfigLoader.parse(minimal, file: "t.toml")
        c.dataplane.workers = workers
        c.dataplane.flowTableEntries = entries
        c.tableSize = tableSize
        c.vips = Array(repeating: c.vips[0], count: vips)
        return c
    }

    @Test func flowTablesThatDoNotFitTheMachineAreRefusedNamingTheKey() throws {
        // flow_table_entries at its documented maximum: 18 GiB per worker.
        let c = try config(workers: 2, entries: 268_435_456)
        let problems = MemoryBudget.startProblems(c, available: 24 << 30)
        #expect(problems.map(\.keyPath) == ["dataplane.flow_table_entries"])
        #expect(problems.first?.message.contains("need 36864 MiB of flow tables") == true)
        #expect(MemoryBudget.startProblems(try config(workers: 1, entries: 1 << 20), available: 24 << 30).isEmpty)
    }

    @Test func maglevTablesThatDoNotFitBesideTheRunningOnesAreRefused() throws {
        let c = try config(workers: 1, entries: 1 << 20, vips: 50, tableSize: 10_000_019)
        #expect(MemoryBudget.reloadProblems(c, available: 1 << 30).map(\.keyPath) == ["maglev.table_size"])
        #expect(MemoryBudget.reloadProblems(c, available: 4 << 30).isEmpty)
        #expect(MemoryBudget.startProblems(c, available: 1 << 30).map(\.keyPath) == ["maglev.table_size"])
    }

    @Test func readsMemAvailable() {
        #expect((MemoryBudget.availableBytes() ?? 0) > 0)
        #expect(MemoryBudget.availableBytes(meminfo: "/nonexistent") == nil)
    }
}

@Suite struct BoundedErrorTests {
    /// A huge key is quoted by its first characters and its size; thousands of problems are listed
    /// up to a hundred, the rest counted, and not all kept in memory.
    @Test func errorsQuoteAShortPrefixAndListAtMostAHundredProblems() {
        let key = String(repeating: "k", count: 100_000)
        do {
            _ = try ConfigLoader.parse(minimal + "[maglev]\n\(key) = 1\n", file: "t.toml")
            Issue.record("accepted")
        } catch {
            #expect(error.lines.allSatisfy { $0.utf8.count < 300 }, "\(error.lines.map(\.count))")
            #expect(error.description.contains("... (100000 bytes)"))
        }
        let many = (0..<5000).map { "x\($0) = 1\n" }.joined()
        do {
            _ = try ConfigLoader.parse(minimal + "[maglev]\n" + many, file: "t.toml")
            Issue.record("accepted")
        } catch {
            #expect(error.problems.count == DocumentReader.kept && error.omitted == 5000 - DocumentReader.kept)
            #expect(error.lines.count == ConfigError.listed + 1)
            #expect(error.lines.last == "t.toml: ... and \(5000 - ConfigError.listed) more problems")
        }
    }
}
