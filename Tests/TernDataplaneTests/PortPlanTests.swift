import Testing

@testable import TernDataplane
@testable import TernWire

@Suite struct PortPlanTests {
    let front = MACAddress(value: 0x02_00_00_00_00_01)
    let back = MACAddress(value: 0x02_00_00_00_01_01)

    func ports(backendDevice: String?) -> [PortPlan.Port] {
        [
            PortPlan.Port(device: "p0", backendDevice: backendDevice, mac: nil, gatewayMAC: MACAddress(value: 0xFE), mtu: 1500),
            PortPlan.Port(device: "p1", mac: back, gatewayMAC: MACAddress(value: 0x1FE), mtu: 9000),
        ]
    }

    @Test func oneArmedPortsSendEverythingBackTheWayItCame() {
        let plan = PortPlan(ports(backendDevice: nil), deviceMACs: [front, MACAddress(value: 0x99)])
        #expect(plan.routes.map(\.backend) == [0, 1])
        let c = plan.routes[0].context
        #expect(c.mac == front && c.gatewayMAC == MACAddress(value: 0xFE) && c.mtu == 1500)
        #expect(c.replyMAC == front && c.replyGatewayMAC == MACAddress(value: 0xFE))
        // A configured mac wins over the device's.
        #expect(plan.routes[1].context.mac == back)
    }

    @Test func backendDeviceTakesTheBackendPortsMACsAndMTUWhileRepliesKeepTheirOwn() {
        let plan = PortPlan(ports(backendDevice: "p1"), deviceMACs: [front, MACAddress(value: 0x99)])
        let r = plan.routes[0]
        #expect(r.rx == 0 && r.backend == 1)
        #expect(r.context.mac == back && r.context.gatewayMAC == MACAddress(value: 0x1FE) && r.context.mtu == 9000)
        #expect(r.context.replyMAC == front && r.context.replyGatewayMAC == MACAddress(value: 0xFE))
    }

    @Test func simulationStandsInForDeviceMACs() {
        let plan = PortPlan(simulating: ports(backendDevice: nil))
        #expect(plan.routes[0].context.mac == PortPlan.simulatedMAC && plan.routes[1].context.mac == back)
    }
}
