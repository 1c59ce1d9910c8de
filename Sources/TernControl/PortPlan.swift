// How the configured ports carry traffic: for each `[[port]]`, the port its encapsulated packets
// leave on (`backend_device`, else itself) and the MACs and MTU its worker queues use. One plan
// for ternd (with the MACs its devices report) and `ternctl simulate` (with a stand-in MAC), so
// the two cannot drift apart.

import TernDataplane
import TernWire

public struct PortPlan: Sendable {
    public struct Route: Sendable {
        /// Index in `[[port]]` of the port packets arrive on.
        public var rx: Int
        /// Index in `[[port]]` of the port encapsulated packets leave on.
        public var backend: Int
        /// MACs and MTU: encapsulated packets take the backend port's, replies the receiving port's.
        public var context: PortContext
    }

    public let routes: [Route]

    /// `deviceMACs[i]`: the MAC port i's device reports, used where `[[port]].mac` is absent; a
    /// next hop ternd learns (`gateway`) starts as `PortContext.unknownMAC` until it is resolved.
    public init(_ ports: [PortConfig], deviceMACs: [MACAddress], learnedGateway: MACAddress = PortContext.unknownMAC) {
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

    /// The plan `ternctl simulate` uses: no devices and no neighbour table, so
    /// `PortConfig.simulatedMAC` and `simulatedGatewayMAC` stand in.
    public init(simulating ports: [PortConfig]) {
        self.init(
            ports, deviceMACs: Array(repeating: PortConfig.simulatedMAC, count: ports.count),
            learnedGateway: PortConfig.simulatedGatewayMAC)
    }
}
