// Every control command against the agent's real types (a reloader over a config file, a worker
// sending flows) and a fake daemon (ports, gateways, health), without a socket or DPDK; and the
// wire: requests parse to commands, replies encode with the keys scripts read and decode back.

import Foundation
import Logging
import Testing

@testable import TernAgent
@testable import TernConfig
@testable import TernTestSupport
@testable import TernWire

/// ControlCommands over `base` with one worker's counters, two fake ports and a learned gateway.
final class FakeDaemon {
    let file = ConfigFile(base)
    let reloader: Reloader
    let sender: FlowSender
    let commands: ControlCommands

    /// `gatewayKnown`: whether the learned gateway's MAC is known (else the node withdraws all).
    init(gatewayKnown: Bool = true) throws {
        reloader = try makeReloader(file)
        let mac = gatewayKnown ? "02:00:00:00:00:fe" : ""
        sender = FlowSender(reloader)
        let info = DaemonInfo(
            configPath: file.path, startedAt: 100, workers: 1,
            ports: { [PortStatus(name: "net_ring0", linkUp: true, speedMbps: 10_000, stats: ["ipackets": 7, "opackets": 5])] },
            stats: LiveStats(blocks: [sender.worker.stats], publisher: reloader.publisher),
            gateways: { [GatewayStatus(port: 0, gateway: "10.0.0.1", interface: "tern0", mac: mac, state: "incomplete")] },
            health: { $0.address == IPAddress("10.1.0.2")! ? HealthState() : nil })
        commands = ControlCommands(reloader: reloader, info: info, wallClock: { 142.5 }, shouldStop: { false }, log: { _, _ in })
    }

    func run(_ command: ControlCommand) -> ControlResponse { commands.handle(command) }
}

@Suite struct ControlCommandsTests {
    @Test func statusSaysWhatRunsAndTheProtocolVersion() throws {
        let d = try FakeDaemon()
        guard case .status(let s) = d.run(.status) else {
            Issue.record("not a status reply")
            return
        }
        #expect(s.protocolVersion == ControlProtocol.version && s.version == TernVersion.string)
        #expect(s.uptimeSeconds == 42 && s.config == d.file.path && s.workers == 1 && s.generation == 1)
        #expect(s.ports.first?.stats["ipackets"] == 7 && s.gateways.first?.state == "incomplete")
        #expect(Set(s.tableFingerprints.keys) == [web, dns] && s.tableFingerprints.values.allSatisfy { $0.count == 16 })
        #expect(s.lastReload == nil && s.reloads == ReloadCounts(ok: 0, failed: 0))
    }

    @Test func statsCountsWhatTheWorkersForwardedAndWhen() throws {
        let d = try FakeDaemon()
        d.sender.send(12)
        guard case .stats(let s) = d.run(.stats) else {
            Issue.record("not a stats reply")
            return
        }
        #expect(s.time == 142.5 && s["rx"]?.number == 12 && s["forwarded"]?.number == 12)
        #expect(s["per_vip"]?.object[web]?.number == 12 && s["reloads"]?.object["ok"]?.number == 0)
    }

    @Test func reloadAppliesTheFileOrSaysWhyNot() throws {
        let d = try FakeDaemon()
        d.file.write(base + "[[vip.backend]]\naddress = \"10.1.0.9\"\n")
        guard case .message = d.run(.reload) else {
            Issue.record("reload refused")
            return
        }
        #expect(d.reloader.publisher.generation == 2)
        d.file.write(base.replacingOccurrences(of: "port = 80", with: "port = 80000"))
        guard case .error(let e) = d.run(.reload) else {
            Issue.record("a bad file was taken")
            return
        }
        #expect(e.error.contains("vip[0].port") && d.reloader.publisher.generation == 2)
    }

    @Test func drainAndUndrainChangeOnlyTheNamedBackendOfTheNamedVIP() throws {
        let d = try FakeDaemon()
        let b1 = IPAddress("10.1.0.1")!
        guard case .message = d.run(.drain(backend: b1, vip: web)) else {
            Issue.record("drain refused")
            return
        }
        #expect(publishedWeights(d.reloader, vip: web)[b1] == 0 && publishedWeights(d.reloader, vip: dns)[b1] == 100)
        guard case .message = d.run(.undrain(backend: b1, vip: nil)) else {
            Issue.record("undrain refused")
            return
        }
        #expect(publishedWeights(d.reloader, vip: web)[b1] == 100)
        guard case .error(let unknown) = d.run(.drain(backend: IPAddress("10.9.9.9")!, vip: nil)) else { return }
        #expect(unknown.error == "no backend 10.9.9.9")
        guard case .error(let noVIP) = d.run(.drain(backend: b1, vip: "192.0.2.99:80/tcp")) else { return }
        #expect(noVIP.error.hasPrefix("no VIP 192.0.2.99:80/tcp"))
    }

    @Test func undrainNamesOnlyTheVIPsWhereItWasDrainedAndChangesNothingElse() throws {
        let d = try FakeDaemon()
        let b1 = IPAddress("10.1.0.1")!
        guard case .message(let never) = d.run(.undrain(backend: b1, vip: nil)) else { return }
        #expect(never.message == "10.1.0.1 was not drained by ternctl drain: nothing changed")
        #expect(d.reloader.publisher.generation == 1)  // nothing published
        _ = d.run(.drain(backend: b1, vip: web))
        guard case .message(let undrained) = d.run(.undrain(backend: b1, vip: nil)) else { return }
        #expect(undrained.message.hasPrefix("undrained \(BackendKey(vip: web, address: b1)) ("), "\(undrained.message)")
        #expect(!undrained.message.contains(dns))
    }

    @Test func showBackendsGivesWeightsSlotsHealthAndTraffic() throws {
        let d = try FakeDaemon()
        d.sender.send(30)
        guard case .backends(let r) = d.run(.showBackends(vip: web)) else {
            Issue.record("not a backends reply")
            return
        }
        #expect(r.vips.map(\.vip) == [web])
        let rows = r.vips[0].backends
        #expect(rows.map(\.address) == ["10.1.0.1", "10.1.0.2"] && rows.allSatisfy { $0.weight == 100 && $0.state == "active" })
        #expect(rows.reduce(0) { $0 + $1.slots } == 1009 && abs(rows.reduce(0) { $0 + $1.share } - 1) < 1e-9)
        #expect(rows.reduce(0) { $0 + $1.packets } == 30 && rows.reduce(0) { $0 + $1.newFlows } == 30)
        // No check configured: "not checked", unless the prober has a state for it (its last result).
        #expect(rows[0].health == "not checked" && rows[1].health == "")
        guard case .error = d.run(.showBackends(vip: "192.0.2.99:80/tcp")) else {
            Issue.record("unknown VIP shown")
            return
        }
    }

    @Test func showVIPsListsEveryVIPWithItsFingerprint() throws {
        let d = try FakeDaemon()
        guard case .vips(let r) = d.run(.showVIPs) else {
            Issue.record("not a vips reply")
            return
        }
        #expect(r.vips.map(\.vip) == [web, dns] && r.generation == 1)
        #expect(
            r.vips[0].protocol == "tcp" && r.vips[0].encap == "ipip" && r.vips[0].backends == 2 && r.vips[0].tableSize == 1009)
        #expect(r.vips[0].fingerprint == d.commands.tableFingerprints()[web])
    }

    @Test func announcementsNameEachPrefixUpWhileItHasBackends() throws {
        let d = try FakeDaemon()
        guard case .announcements(let r) = d.run(.announcements) else {
            Issue.record("not announcements")
            return
        }
        #expect(r.prefixes.map(\.prefix) == ["192.0.2.10/32", "192.0.2.11/32"] && r.prefixes.allSatisfy(\.up))
    }

    /// A restarted ternd that does not know its router's MAC yet would drop every packet routed to
    /// it: it asks for nothing to be announced until it does.
    @Test func nothingIsAnnouncedWhileALearnedGatewayIsUnknown() throws {
        let d = try FakeDaemon(gatewayKnown: false)
        guard case .announcements(let r) = d.run(.announcements), case .vips(let v) = d.run(.showVIPs) else {
            Issue.record("not announcements")
            return
        }
        #expect(r.prefixes.count == 2 && r.prefixes.allSatisfy { !$0.up })
        #expect(v.vips.allSatisfy { !$0.announced })
    }
}

@Suite struct ControlWireTests {
    @Test func requestsParseToCommandsAndBack() throws {
        let drain = ControlCommand.drain(backend: IPAddress("10.1.0.1")!, vip: web)
        #expect(
            String(decoding: drain.line, as: UTF8.self)
                == "{\"backend\":\"10.1.0.1\",\"command\":\"drain\",\"vip\":\"192.0.2.10:80/tcp\"}\n")
        for command in [
            ControlCommand.status, .stats, .reload, drain, .undrain(backend: IPAddress("fc00::1")!, vip: nil),
            .showBackends(vip: nil), .showBackends(vip: dns), .showVIPs, .announcements,
            .capture(try CaptureRequest(arguments: ["file": "/tmp/x.pcap", "filter": "tcp port 80", "count": "5"])),
            .captureStatus, .captureStop,
        ] {
            #expect(try ControlCommand(line: command.line) == command)
        }
        #expect(ControlCommand.names.count == 11)
        #expect(throws: ControlFailure("capture: count must be 1-10000000, got 0")) {
            try ControlCommand(line: Array("{\"command\":\"capture\",\"file\":\"/tmp/x\",\"count\":\"0\"}".utf8))
        }
    }

    @Test func badRequestsSayWhatIsWrong() {
        func failure(_ text: String) -> String? {
            do {
                _ = try ControlCommand(line: Array(text.utf8))
                return nil
            } catch { return error.message }
        }
        #expect(failure("not json") == "the request is not a JSON object")
        #expect(failure("{\"cmd\":\"status\"}") == "the request has no \"command\"")
        #expect(failure("{\"command\":\"drain\",\"backend\":1}") == "argument \"backend\" must be a string")
        #expect(failure("{\"command\":\"drain\"}") == "drain needs backend=ADDRESS")
        #expect(failure("{\"command\":\"undrain\",\"backend\":\"nope\"}") == "undrain needs backend=ADDRESS")
        #expect(failure("{\"command\":\"reboot\"}")?.hasPrefix("unknown command \"reboot\" (status, stats, reload,") == true)
    }

    /// The keys scripts and the Python tests read (README's contract), as they go on the wire.
    @Test func repliesCarryTheDocumentedKeys() throws {
        let d = try FakeDaemon()
        func keys(_ r: ControlResponse) throws -> Set<String> {
            Set(try ControlWire.decode([String: JSONValue].self, from: r.line).keys)
        }
        #expect(
            try keys(d.run(.status)) == [
                "ok", "protocol", "version", "uptime_s", "config", "generation", "workers", "ports", "reloads", "summary",
                "table_fingerprints", "gateways", "announced",
            ])
        let port = try ControlWire.decode(StatusReply.self, from: d.run(.status).line).ports[0]
        #expect(port == PortStatus(name: "net_ring0", linkUp: true, speedMbps: 10_000, stats: ["ipackets": 7, "opackets": 5]))
        #expect(
            String(decoding: d.run(.status).line, as: UTF8.self).contains(
                "\"link_up\":true,\"name\":\"net_ring0\",\"speed_mbps\":10000"))
        #expect(try keys(d.run(.showVIPs)) == ["ok", "vips", "generation"])
        let row = try ControlWire.decode([String: JSONValue].self, from: d.run(.showBackends(vip: web)).line)["vips"]
        guard case .array(let vips)? = row, case .array(let backends)? = vips.first?.object["backends"] else {
            Issue.record("no backends")
            return
        }
        #expect(
            Set(backends[0].object.keys) == [
                "address", "weight", "effective_weight", "state", "slots", "share", "packets", "bytes", "new_flows", "health",
            ])
        #expect(try keys(d.run(.stats)).isSuperset(of: ["ok", "time", "rx", "forwarded", "dropped", "per_vip"]))
        #expect(try keys(.failure("no")) == ["ok", "error"])
        #expect(
            try ControlWire.decode(ReplyHeader.self, from: ControlResponse.failure("no").line)
                == ReplyHeader(ok: false, error: "no"))
    }
}

@Suite struct FeedTrustTests {
    func trusted(_ prefix: String, communities: [String] = [], med: Int? = nil) -> String? {
        switch Announcement.trusted(PrefixAnnouncement(prefix: prefix, up: true, communities: communities, med: med)) {
        case .success(let (p, _)): p
        case .failure: nil
        }
    }

    @Test func onlyPrefixesAVIPCanHaveWithWellFormedAttributesPass() {
        #expect(trusted("192.0.2.10/32") == "192.0.2.10/32" && trusted("198.51.100.0/24") == "198.51.100.0/24")
        #expect(trusted("2001:DB8::10/128") == "2001:db8::10/128" && trusted("2001:db8::/120") == "2001:db8::/120")
        #expect(trusted("192.0.2.10/32", communities: ["65000:100"], med: 10) != nil)
        for bad in [
            "0.0.0.0/0", "10.0.0.0/8", "192.0.2.10", "192.0.2.10/33", "192.0.2.1/24", "127.0.0.1/32", "192.0.2.10/32\nannounce",
            "192.0.2.10/+32", "x/32",
        ] {
            #expect(trusted(bad) == nil, "\(bad)")
        }
        #expect(trusted("192.0.2.10/32", communities: ["65000:100]\nannounce route 0.0.0.0/0"]) == nil)
        #expect(trusted("192.0.2.10/32", communities: ["70000:1"]) == nil)
        #expect(trusted("192.0.2.10/32", med: -1) == nil)
    }
}
