// The data plane's plan from a config and the devices' facts, without DPDK: ring sizes fitted to
// each device, refusals keyed by schema key, the pool, the host path, learned next hops, workers.

import Testing

@testable import TernAgent
@testable import TernConfig
@testable import TernDataplane
@testable import TernWire

@Suite struct DataplanePlanTests {
    static let ring = DescriptorLimits(min: 64, max: 4096, align: 32)

    static func device(
        _ name: String, devargs: String = "", maxMTU: Int = 9000, replayed: Int = 0, mac: UInt64 = 0x02_00_00_00_00_0A
    )
        -> DeviceFacts
    {
        var facts = DeviceFacts(name: name, mac: MACAddress(value: mac))
        (facts.devargs, facts.rxLimits, facts.txLimits, facts.maxMTU, facts.replayedPackets) = (
            devargs, ring, ring, maxMTU, replayed
        )
        return facts
    }

    /// AgentTests' `base` config with these ports and `[dataplane]` keys, two workers.
    static func config(_ ports: String, dataplane: String = "") throws -> TernConfig {
        let port = "[[port]]\ndevice = \"net_ring0\"\ngateway_mac = \"02:00:00:00:00:fe\"\n"
        precondition(base.contains(port))
        return try ConfigLoader.parse(
            base.replacingOccurrences(of: port, with: "[dataplane]\nworkers = 2\n\(dataplane)\n\(ports)\n"), file: "plan.toml")
    }

    static let twoPorts = """
        [[port]]
        device = "net_ring0"
        gateway_mac = "02:00:00:00:00:fe"
        backend_device = "net_af_packet0"
        host_interface = "tern0"
        [[port]]
        device = "net_af_packet0"
        gateway = "10.0.0.1"
        host_interface = "tern1"
        mtu = 1600
        """

    func refusal(_ config: TernConfig, _ devices: [DeviceFacts], lcores: Int = 2) -> [String] {
        guard case .failure(let e) = DataplanePlan.make(config: config, file: "plan.toml", devices: devices, workerLcores: lcores)
        else { return [] }
        return e.lines
    }

    @Test func aPlanFitsRingsToEachDeviceAndSizesThePoolForEverythingThatHoldsMbufs() throws {
        let c = try DataplanePlanTests.config(DataplanePlanTests.twoPorts)
        let devices = [
            DataplanePlanTests.device("net_ring0", replayed: 500),
            DataplanePlanTests.device("net_af_packet0", devargs: "iface=lb0,framesz=4096", mac: 0x02_00_00_00_00_0B),
        ]
        let plan = try DataplanePlan.make(config: c, file: "plan.toml", devices: devices, workerLcores: 2).get()
        #expect(plan.workers == 2 && plan.burstSize == 32)
        #expect(
            plan.ports == [
                .init(rxDescriptors: 1024, txDescriptors: 1024, deviceMTU: 1500),
                .init(rxDescriptors: 1024, txDescriptors: 1024, deviceMTU: nil),
            ])
        #expect(plan.hostPorts == [0, 1] && plan.learnedGateways == [1])
        // The pool covers both ports' rings per worker, the host path and the replayed capture.
        let expected = MbufPlan.compute(
            workers: 2, burstSize: 32, descriptors: [(1024, 1024), (1024, 1024)], hostPorts: [0, 1], replayPackets: 500,
            heldFragments: FragmentTable.heldCapacity)
        #expect(plan.mbufPlan == expected && plan.mbufs == expected.total && plan.mbufSummary == expected.summary)
        // af_packet's framesz decides the data room (4096 - 32), above the MTUs' 2048.
        #expect(plan.dataRoom == 4064)
        // Port 0 sends toward backends on port 1 with port 1's MAC; its replies keep its own.
        let r = plan.routes.routes[0]
        #expect(r.backend == 1 && r.context.mac == MACAddress(value: 0x02_00_00_00_00_0B) && r.context.mtu == 1600)
        #expect(r.context.replyMAC == MACAddress(value: 0x02_00_00_00_00_0A))
        #expect(plan.routes.routes[1].context.gatewayMAC == PortContext.unknownMAC)
        #expect(plan.worker == WorkerSettings(config: c) && plan.worker.flowTableEntries == 1_048_576)
    }

    @Test func whatTheDevicesCannotServeIsRefusedByKey() throws {
        let c = try DataplanePlanTests.config(
            DataplanePlanTests.twoPorts.replacingOccurrences(of: "mtu = 1600", with: "mtu = 9000"),
            dataplane: "rx_descriptors = 100")
        let lines = refusal(
            c, [DataplanePlanTests.device("net_ring0", maxMTU: 1500), DataplanePlanTests.device("net_af_packet0")], lcores: 1)
        #expect(
            lines == [
                "plan.toml: dataplane.workers: 2 needs 2 worker lcores besides the main one; EAL has 1 (use -l 0-2)",
                "plan.toml: dataplane.rx_descriptors: 100 does not fit port[0] (net_ring0): it takes 64...4096 in multiples of 32",
                "plan.toml: dataplane.rx_descriptors: 100 does not fit port[1] (net_af_packet0): it takes 64...4096 in multiples of 32",
                "plan.toml: port[1].mtu: 9000 needs framesz=9088 or more on net_af_packet0 (it has 2048)",
            ])
        let big = try DataplanePlanTests.config(DataplanePlanTests.twoPorts.replacingOccurrences(of: "mtu = 1600", with: ""))
        let tooBig = try DataplanePlanTests.config(
            DataplanePlanTests.twoPorts.replacingOccurrences(of: "backend_device = \"net_af_packet0\"", with: "mtu = 9000"))
        #expect(refusal(big, [DataplanePlanTests.device("net_ring0"), DataplanePlanTests.device("net_af_packet0")]).isEmpty)
        #expect(
            refusal(tooBig, [DataplanePlanTests.device("net_ring0", maxMTU: 1500), DataplanePlanTests.device("net_af_packet0")])
                == ["plan.toml: port[0].mtu: 9000 is more than net_ring0 takes (1500)"])
    }

    @Test func aConfiguredPoolSizeIsUsedAsGiven() throws {
        let c = try DataplanePlanTests.config(DataplanePlanTests.twoPorts, dataplane: "mbufs = 5000")
        let plan = try DataplanePlan.make(
            config: c, file: "plan.toml",
            devices: [DataplanePlanTests.device("net_ring0"), DataplanePlanTests.device("net_af_packet0")],
            workerLcores: 2
        ).get()
        #expect(plan.mbufs == 5000 && plan.mbufSummary == "5000 mbufs (dataplane.mbufs)")
    }

    @Test func keyPathsComeFromTheSchema() {
        #expect(ConfigSchema.portMTU.at(ConfigSchema.port.element(3)) == "port[3].mtu")
        #expect(
            ConfigSchema.backendWeight.at(ConfigSchema.backend.element(0, in: ConfigSchema.vip.element(1)))
                == "vip[1].backend[0].weight")
        #expect(ConfigSchema.tableSize.at("") == "maglev.table_size")
    }
}
