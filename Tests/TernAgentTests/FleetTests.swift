// The fleet's control-thread half (FleetApplier) without etcd: what the follower would leave in
// its inbox is put there by hand; and the config side: [fleet] keys, the site document's tables.

import Foundation
import Testing

@testable import TernAgent
@testable import TernConfig
@testable import TernWire

/// AgentTests' `base` (its VIPs stand in for the file's own) with a [fleet] table.
let fleetNode =
    base + """
        [fleet]
        endpoints = ["http://127.0.0.1:2379", "http://[::1]:2379"]
        prefix = "/tern/t"
        node = "lb1"
        cache = "/tmp/tern-fleet-test-cache.toml"

        """

func siteDocument(_ backends: [String], quorum: Bool = false) -> [UInt8] {
    var text = "[maglev]\ntable_size = 1009\n[[vip]]\naddress = \"192.0.2.10\"\nport = 80\nprotocol = \"tcp\"\n"
    if quorum { text += "[vip.health]\ncheck = \"tcp\"\nquorum = \"fleet\"\n" }
    for b in backends { text += "[[vip.backend]]\naddress = \"\(b)\"\n" }
    return Array(text.utf8)
}

@Suite struct FleetConfigTests {
    @Test func fleetKeysAreReadAndChecked() throws {
        let c = try ConfigLoader.parse(fleetNode, file: "n.toml")
        #expect(c.fleet?.endpoints.map(\.description) == ["http://127.0.0.1:2379", "http://[::1]:2379"])
        #expect(c.fleet?.prefix == "/tern/t" && c.fleet?.node == "lb1" && c.fleet?.pollMilliseconds == 250)
        let bad = fleetNode.replacingOccurrences(of: "\"http://127.0.0.1:2379\"", with: "\"ftp://127.0.0.1:2379\"")
            .replacingOccurrences(of: "prefix = \"/tern/t\"", with: "prefix = \"tern/\"")
        #expect(throws: ConfigError.self) { try ConfigLoader.parse(bad, file: "n.toml") }
        do {
            _ = try ConfigLoader.parse(bad, file: "n.toml")
        } catch {
            #expect(
                error.description.contains(
                    "fleet.endpoints: \"ftp://127.0.0.1:2379\" is not http://HOST:PORT or https://HOST:PORT"))
            #expect(error.description.contains("fleet.prefix: must start with / and not end with one"))
        }
    }

    /// https endpoints take TLS files (readable, a certificate with its key); http ones take none.
    @Test func tlsFilesGoWithHTTPSEndpoints() throws {
        let https = fleetNode.replacingOccurrences(of: "http://", with: "https://")
        #expect(try ConfigLoader.parse(https, file: "n.toml").fleet?.endpoints.allSatisfy(\.tls) == true)
        func problems(_ text: String) -> String {
            do {
                _ = try ConfigLoader.parse(text, file: "n.toml")
                return ""
            } catch { return error.description }
        }
        #expect(
            problems(https + "cert_file = \"/etc/hostname\"\n").contains("fleet.key_file: cert_file and key_file go together"))
        #expect(problems(https + "ca_file = \"/no/such/ca.pem\"\n").contains("fleet.ca_file: cannot read /no/such/ca.pem"))
        #expect(problems(fleetNode + "ca_file = \"/etc/hostname\"\n").contains("need https:// endpoints"))
        let mixed = fleetNode.replacingOccurrences(of: "\"http://127.0.0.1:2379\"", with: "\"https://127.0.0.1:2379\"")
        #expect(problems(mixed).contains("all http:// or all https://"))
    }

    /// The site document's VIPs replace the file's; its errors name it and its own lines; a
    /// node-local table in it is refused.
    @Test func theSiteDocumentReplacesTheFilesVIPsAndNamesItsOwnLines() throws {
        let c = try ConfigLoader.parse(
            node: Array(fleetNode.utf8), file: "n.toml", site: siteDocument(["10.1.0.1"]), siteName: "etcd")
        #expect(c.vips.map(\.name) == ["192.0.2.10:80/tcp"] && c.tableSize == 1009 && c.node.name == "agent" && c.fleet != nil)
        var bad = siteDocument(["10.1.0.1"])
        bad += Array(
            "[[vip]]\naddress = \"192.0.2.11\"\nport = 70000\nprotocol = \"tcp\"\n[[vip.backend]]\naddress = \"10.1.0.1\"\n".utf8)
        do {
            _ = try ConfigLoader.parse(node: Array(fleetNode.utf8), file: "n.toml", site: bad, siteName: "etcd /tern/t/config")
            Issue.record("accepted")
        } catch {
            #expect(
                error.description.contains("etcd /tern/t/config:11: vip[1].port: must be in 0...65535, got 70000"), "\(error)")
        }
        do {
            _ = try ConfigLoader.siteDocument(Array("[[port]]\ndevice = \"x\"\n".utf8), name: "site")
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains("site:1: port: is node-local"), "\(error)")
        }
    }

    @Test func healthQuorumNeedsAFleet() {
        let text = base.replacingOccurrences(
            of: "[[vip.backend]]\naddress = \"10.1.0.1\"\n[[vip.backend]]",
            with: "[vip.health]\ncheck = \"tcp\"\nquorum = \"fleet\"\n[[vip.backend]]\naddress = \"10.1.0.1\"\n[[vip.backend]]")
        do {
            _ = try ConfigLoader.parse(text, file: "t.toml")
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains("vip[0].health.quorum: \"fleet\" needs a [fleet] table"), "\(error)")
        }
    }
}

@Suite struct FleetApplierTests {
    func applier() throws -> (FleetApplier, Reloader, ConfigFile) {
        let file = ConfigFile(fleetNode)
        let reloader = try makeReloader(file)
        let info = DaemonInfo(
            configPath: file.path, startedAt: 0, workers: 1, ports: { [] },
            stats: LiveStats(blocks: [], publisher: reloader.publisher))
        let commands = ControlCommands(reloader: reloader, info: info, wallClock: { 0 }, shouldStop: { false }, log: { _, _ in })
        // A cache of its own: the tests run in parallel.
        var config = try ConfigLoader.load(path: file.path).fleet!
        config.cache = NSTemporaryDirectory() + "tern-fleet-cache-\(UUID().uuidString).toml"
        let a = FleetApplier(
            config: config, reloader: reloader, commands: commands, log: { _, _ in }, wallClock: { 0 }, startedWith: 0)
        return (a, reloader, file)
    }

    /// A new revision runs through a reload and is cached with its revision; a refused one keeps
    /// the running revision and says why, once per revision; drains follow the store's keys.
    @Test func documentsAndDrainsFromTheStoreAreApplied() throws {
        let (a, reloader, file) = try applier()
        defer { withExtendedLifetime(file) { _ = unlink(a.config.cache) } }
        a.inbox.withLockedValue {
            $0 = FleetSnapshot(revision: 7, document: siteDocument(["10.1.0.1", "10.1.0.2"]), reachable: true)
        }
        var report = a.sync(node: "lb1")
        #expect(report.revision == 7 && reloader.desired.config.vips.map(\.name) == ["192.0.2.10:80/tcp"])
        #expect(FleetApplier.readCache(a.config.cache)?.revision == 7)
        a.inbox.withLockedValue { $0 = FleetSnapshot(revision: 9, document: Array("[[vip]]\nport = 1\n".utf8), reachable: true) }
        report = a.sync(node: "lb1")
        #expect(report.revision == 7 && report.refused.contains("revision 9") && reloader.desired.config.vips.count == 1)
        let drain = FleetDrain(backend: "10.1.0.2", vip: nil)
        a.inbox.withLockedValue { $0.drains = [drain] }
        report = a.sync(node: "lb1")
        #expect(report.drains == ["10.1.0.2"] && reloader.desired.overrides.values.contains(.draining))
        a.inbox.withLockedValue { $0.drains = [] }
        #expect(a.sync(node: "lb1").drains.isEmpty && reloader.desired.overrides.isEmpty)
        // etcd away: nothing applied, the state says so.
        a.inbox.withLockedValue {
            $0 = FleetSnapshot(revision: 11, document: siteDocument(["10.1.0.3"]), reachable: false, error: "refused")
        }
        #expect(a.sync(node: "lb1").revision == 7 && !a.state.reachable && a.state.error == "refused")
    }

    /// quorum = "fleet": a backend goes down only when more than half of the live reports say so.
    @Test func healthQuorumNeedsMoreThanHalfOfTheLiveNodes() throws {
        let (a, reloader, file) = try applier()
        defer { withExtendedLifetime(file) { _ = unlink(a.config.cache) } }
        a.inbox.withLockedValue {
            $0 = FleetSnapshot(revision: 3, document: siteDocument(["10.1.0.1", "10.1.0.2"], quorum: true), reachable: true)
        }
        _ = a.sync(node: "lb1")
        let key = BackendKey(vip: "192.0.2.10:80/tcp", address: IPAddress("10.1.0.1")!)
        func report(_ up: Bool) -> FleetNodeReport {
            FleetNodeReport(
                node: "n", revision: 3, generation: 1, fingerprints: [:], announced: [], health: ["\(key.vip) 10.1.0.1": up],
                drains: [], refused: "", time: 0)
        }
        a.inbox.withLockedValue { $0.reports = [report(false), report(true), report(true)] }
        _ = a.sync(node: "lb1")
        #expect(!reloader.desired.down.contains(key))
        a.inbox.withLockedValue { $0.reports = [report(false), report(false), report(true)] }
        _ = a.sync(node: "lb1")
        #expect(reloader.desired.down.contains(key))
        a.inbox.withLockedValue { $0.reports = [report(false), report(true)] }  // a node left: 1 of 2 is not more than half
        _ = a.sync(node: "lb1")
        #expect(!reloader.desired.down.contains(key))
    }
}

@Suite struct EtcdEncodingTests {
    /// A prefix's range end is the prefix with its last byte raised (etcd's convention).
    @Test func aPrefixRangeEndsWhereTheNextPrefixBegins() {
        #expect(EtcdClient.prefixEnd("/tern/t/nodes/") == "/tern/t/nodes0")
        #expect(EtcdClient.unbase64(EtcdClient.base64("/tern/t/config")) == Array("/tern/t/config".utf8))
        #expect(EtcdClient.int("42") == 42 && EtcdClient.int(nil) == 0)
    }

    @Test func endpointsAreHTTPOrHTTPSWithAPort() {
        #expect(FleetConfig.endpoint("http://10.0.0.5:2379") == .init(host: "10.0.0.5", port: 2379, tls: false))
        #expect(FleetConfig.endpoint("https://[fd00::5]:2379/") == .init(host: "fd00::5", port: 2379, tls: true))
        for bad in ["10.0.0.5:2379", "http://10.0.0.5", "http://user@h:1", "http://h:0", "unix:///run/etcd.sock"] {
            #expect(FleetConfig.endpoint(bad) == nil, "\(bad)")
        }
    }
}
