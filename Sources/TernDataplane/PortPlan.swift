// How the configured ports carry traffic: for each port, the port its encapsulated packets leave on
// (`backend_device`, else itself) and the MACs and MTU its worker queues use. One plan for ternd
// (with the MACs its devices report) and `ternctl simulate` (with stand-in MACs), so the two cannot
// drift apart. It knows ports only as `PortPlan.Port` (what the config's `[[port]]` says about
// addressing); TernAgent maps the validated config to it.

import TernWire

public struct PortPlan: Sendable {
    /// What a `[[port]]` says about addressing; nil where the device or the neighbour table decides.
    public struct Port: Sendable, Equatable {
        public var device: String
        public var backendDevice: String?
        public var mac: MACAddress?
        public var gatewayMAC: MACAddress?
        public var mtu: Int
        public var clampMSS: Bool
        public var vlan: Int?

        public init(
            device: String, backendDevice: String? = nil, mac: MACAddress? = nil, gatewayMAC: MACAddress?, mtu: Int,
            clampMSS: Bool = false, vlan: Int? = nil
        ) {
            self.device = device
            self.backendDevice = backendDevice
            self.mac = mac
            self.gatewayMAC = gatewayMAC
            self.mtu = mtu
            self.clampMSS = clampMSS
            self.vlan = vlan
        }
    }

    public struct Route: Sendable {
        /// Index of the port packets arrive on.
        public var rx: Int
        /// Index of the port encapsulated packets leave on.
        public var backend: Int
        /// MACs and MTU: encapsulated packets take the backend port's, replies the receiving port's.
        public var context: PortContext
    }

    public let routes: [Route]

    /// `ternctl simulate`'s stand-ins: it has no devices and no neighbour table.
    public static let simulatedMAC = MACAddress(value: 0x02_00_00_00_00_01)
    public static let simulatedGatewayMAC = MACAddress(value: 0x02_00_00_00_00_FE)

    /// `deviceMACs[i]`: the MAC port i's device reports, used where the port sets no `mac`; a
    /// next hop ternd learns (`gateway`) starts as `PortContext.unknownMAC` until it is resolved.
    public init(_ ports: [Port], deviceMACs: [MACAddress], learnedGateway: MACAddress = PortContext.unknownMAC) {
        precondition(deviceMACs.count == ports.count, "one device MAC per port")
        routes = ports.enumerated().map { i, p in
            let b = p.backendDevice.flatMap { name in ports.firstIndex { $0.device == name } } ?? i
            let backend = ports[b]
            return Route(
                rx: i, backend: b,
                context: PortContext(
                    mac: backend.mac ?? deviceMACs[b], gatewayMAC: backend.gatewayMAC ?? learnedGateway, mtu: backend.mtu,
                    replyMAC: p.mac ?? deviceMACs[i], replyGatewayMAC: p.gatewayMAC ?? learnedGateway, clampMSS: p.clampMSS,
                    vlan: UInt16(backend.vlan ?? 0), replyVLAN: UInt16(p.vlan ?? 0)))
        }
    }

    /// The plan `ternctl simulate` uses: `simulatedMAC` and `simulatedGatewayMAC` stand in for
    /// devices and the neighbour table.
    public init(simulating ports: [Port]) {
        self.init(
            ports, deviceMACs: Array(repeating: PortPlan.simulatedMAC, count: ports.count),
            learnedGateway: PortPlan.simulatedGatewayMAC)
    }
}
