// Learns each port's next hop (`[[port]] gateway`) from the kernel's neighbour table on the
// port's host interface, twice a second, and publishes its MAC to the workers (`GatewayCell`)
// without a restart. A missing or stale entry makes the kernel resolve the address again (a
// nudge), so a router that changed its MAC is followed; until the MAC is known, or after the
// kernel gave up (FAILED), workers drop what would go to it (`no_neighbor`).

import Logging
import TernConfig
import TernDataplane
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

public final class NeighborWatcher {
    public struct Target {
        /// Index of the port in `[[port]]`.
        public var port: Int
        public var gateway: IPAddress
        public var interface: String
        public var cell: GatewayCell

        public init(port: Int, gateway: IPAddress, interface: String, cell: GatewayCell) {
            self.port = port
            self.gateway = gateway
            self.interface = interface
            self.cell = cell
        }
    }

    public let targets: [Target]
    /// Per target: the kernel's state for the gateway at the last poll ("none": no entry).
    public private(set) var states: [String]
    let neighbors: () -> Result<[Netlink.Neighbor], NetlinkError>
    let nudge: (IPAddress, String) -> NetlinkError?
    let interfaceIndex: (String) -> Int32
    let log: (Logger.Level, String) -> Void
    var lastError: String?

    public init(
        targets: [Target], log: @escaping (Logger.Level, String) -> Void,
        neighbors: @escaping () -> Result<[Netlink.Neighbor], NetlinkError> = Netlink.neighbors,
        nudge: @escaping (IPAddress, String) -> NetlinkError? = Netlink.nudge,
        interfaceIndex: @escaping (String) -> Int32 = { Int32(bitPattern: if_nametoindex($0)) }
    ) {
        self.targets = targets
        self.log = log
        self.neighbors = neighbors
        self.nudge = nudge
        self.interfaceIndex = interfaceIndex
        states = Array(repeating: "none", count: targets.count)
    }

    /// What a neighbour entry means for the MAC workers use now: the MAC to use, and whether to
    /// ask the kernel to resolve the address again.
    public static func decide(_ entry: Netlink.Neighbor?, current: MACAddress) -> (mac: MACAddress, nudge: Bool) {
        typealias S = Netlink.State
        guard let entry else { return (current, true) }  // none yet, or collected: keep, resolve
        if entry.state & S.failed != 0 { return (PortContext.unknownMAC, true) }
        guard let mac = entry.mac, mac != PortContext.unknownMAC else { return (current, entry.state & S.incomplete == 0) }
        // A stale entry is the kernel's last word, unconfirmed: use it and have it confirmed.
        return (mac, entry.state & S.stale != 0)
    }

    /// One look at the neighbour table (the control loop calls this every 0.5 s).
    public func poll() {
        let table: [Netlink.Neighbor]
        switch neighbors() {
        case .success(let t): table = t
        case .failure(let e):
            if lastError != e.description { log(.error, "neighbour table: \(e.description)") }
            lastError = e.description
            return
        }
        lastError = nil
        for (i, t) in targets.enumerated() {
            let index = interfaceIndex(t.interface)
            let entry = table.first { $0.interfaceIndex == index && $0.address == t.gateway }
            states[i] = entry.map { Netlink.State.name($0.state) } ?? "none"
            let before = t.cell.mac
            let (mac, again) = NeighborWatcher.decide(entry, current: before)
            if mac != before {
                t.cell.mac = mac
                if mac == PortContext.unknownMAC {
                    log(
                        .warning,
                        "\(ConfigSchema.port.element(t.port)) gateway \(t.gateway): unreachable (\(states[i])); dropping what goes to it (no_neighbor)"
                    )
                } else {
                    log(
                        .info,
                        "\(ConfigSchema.port.element(t.port)) gateway \(t.gateway) is at \(mac)\(before == PortContext.unknownMAC ? "" : " (was \(before))")"
                    )
                }
            }
            if again, let e = nudge(t.gateway, t.interface) {
                log(.debug, "\(ConfigSchema.port.element(t.port)) gateway: \(e.description)")
            }
        }
    }

    /// For `ternctl status`: each learned gateway, its MAC ("" while unknown) and the kernel's state.
    public var status: [GatewayStatus] {
        targets.enumerated().map { i, t in
            let mac = t.cell.mac
            return GatewayStatus(
                port: t.port, gateway: t.gateway.description, interface: t.interface,
                mac: mac == PortContext.unknownMAC ? "" : mac.description, state: states[i])
        }
    }
}
