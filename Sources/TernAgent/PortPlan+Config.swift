// The validated config's `[[port]]` tables as the data plane's port plan sees them: the one mapping
// ternd and `ternctl simulate` share (TernConfig does not know the data plane).

import TernConfig
import TernDataplane
import TernWire

extension PortConfig {
    /// What the port plan needs of this port.
    public var planned: PortPlan.Port {
        PortPlan.Port(
            device: device, backendDevice: backendDevice, mac: mac, gatewayMAC: gatewayMAC, mtu: mtu, clampMSS: clampMSS,
            vlan: vlan)
    }
}

extension PortPlan {
    public init(_ ports: [PortConfig], deviceMACs: [MACAddress], learnedGateway: MACAddress = PortContext.unknownMAC) {
        self.init(ports.map(\.planned), deviceMACs: deviceMACs, learnedGateway: learnedGateway)
    }

    public init(simulating ports: [PortConfig]) { self.init(simulating: ports.map(\.planned)) }
}
