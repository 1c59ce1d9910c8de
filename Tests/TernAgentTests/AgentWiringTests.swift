// The agent wired over a fake data plane: reloads, learned next hops, status, telemetry and the
// loop's stop conditions, without DPDK (ternd's Dataplane is the real DataplaneView).

import Testing

@testable import TernAgent
@testable import TernConfig
@testable import TernDataplane
@testable import TernMetrics
@testable import TernWire

#if canImport(Glibc)
    import Glibc
#endif

/// The data plane as the agent sees it, without DPDK: one worker's real counter block, two ports,
/// a learned next hop.
final class FakeDataplane: DataplaneView {
    let block = CounterBlock.allocate()
    let cell = GatewayCell()
    var received: UInt64 = 0
    deinit { block.deallocate() }
    var portStatus: [PortStatus] {
        [PortStatus(name: "net_ring0", linkUp: true, speedMbps: 10_000, stats: ["ipackets": received])]
    }
    var counterBlocks: [CounterBlock] { [block] }
    var hostCounters: CounterBlock? { nil }
    var progress: UInt64 { received }
    var gateways: [Int: GatewayCell] { [0: cell] }
}

@Suite struct AgentWiringTests {
    static let learning = base.replacingOccurrences(
        of: "gateway_mac = \"02:00:00:00:00:fe\"", with: "gateway = \"10.0.0.1\"\nhost_interface = \"tern-agent0\"")

    func agent(_ file: ConfigFile, _ dataplane: FakeDataplane, signals: [Int32?], lines: Lines, now: Clock) throws -> Agent {
        let config = try ConfigLoader.load(path: file.path)
        let publisher = Publisher(spec: DesiredState(config: config).snapshotSpec, workers: 1)
        // The kernel's answer: the next hop reachable (NUD_REACHABLE) on the host interface (an
        // index of 0: the interface does not exist here, and if_nametoindex says 0 for it too).
        let mac = Netlink.Neighbor(
            interfaceIndex: 0, address: IPAddress("10.0.0.1")!, mac: MACAddress(value: 0x02_00_00_00_00_99), state: 2)
        return Agent(
            config: config, configPath: file.path, publisher: publisher, dataplane: dataplane, signals: ScriptedSignals(signals),
            server: nil, stopWhenIdleSeconds: 2,
            environment: AgentEnvironment(
                log: { lines.append($1) }, clock: now.tick, wallClock: { 1000 }, availableMemory: { nil }),
            neighbors: { .success([mac]) })
    }

    /// SIGHUP reloads what the file says, the learned next hop reaches the workers' cell, status and
    /// metrics show the data plane's ports and counters, and the idle timer stops the loop.
    @Test func theAgentRunsTheControlPlaneOverADataplaneView() throws {
        let file = ConfigFile(AgentWiringTests.learning)
        let dataplane = FakeDataplane()
        let lines = Lines()
        let now = Clock()
        let agent = try agent(
            file, dataplane, signals: [nil, SIGHUP] + Array(repeating: nil, count: 200), lines: lines, now: now)
        file.write(AgentWiringTests.learning + "[[vip.backend]]\naddress = \"10.1.0.9\"\n")
        dataplane.received = 5
        dataplane.block.add(.rx, 5)
        #expect(agent.run(pollMilliseconds: 0) == "no packet for 2.0 s")
        #expect(agent.reloader.succeeded == 1 && agent.reloader.publisher.generation == 2)
        #expect(dataplane.cell.mac == MACAddress(value: 0x02_00_00_00_00_99))
        guard case .status(let s) = agent.commands.handle(.status) else {
            Issue.record("no status")
            return
        }
        #expect(s.ports.first?.stats["ipackets"] == 5 && s.gateways.first?.mac == "02:00:00:00:00:99")
        let metrics = String(decoding: agent.commands.telemetry("/tern/stats"), as: UTF8.self)
        #expect(metrics.contains("generation 2"))
        #expect(agent.report().json.contains("\"reloads\":{\"ok\":1,\"failed\":0}"))
        #expect(lines.all.contains { $0.hasPrefix("reload ok") })
    }

    @Test func sigtermStopsTheAgent() throws {
        let file = ConfigFile(base)
        let agent = try agent(file, FakeDataplane(), signals: [nil, SIGTERM], lines: Lines(), now: Clock())
        #expect(agent.run(pollMilliseconds: 0) == "signal \(SIGTERM)")
    }
}

/// Log lines and a clock that advances a quarter second each time it is read.
final class Lines: @unchecked Sendable {
    var all: [String] = []
    func append(_ line: String) { all.append(line) }
}

final class Clock: @unchecked Sendable {
    var now = 0.0
    func tick() -> Double {
        now += 0.25
        return now
    }
}
