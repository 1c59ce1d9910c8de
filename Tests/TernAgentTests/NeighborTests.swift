import Testing

@testable import TernAgent
@testable import TernDataplane
@testable import TernWire

#if canImport(Glibc)
    import Glibc
#endif

/// An RTM_NEWNEIGH message as the kernel sends it: nlmsghdr, ndmsg, NDA_DST, NDA_LLADDR.
func neighborMessage(family: UInt8, index: UInt32, state: UInt16, address: [UInt8], mac: [UInt8]?) -> [UInt8] {
    func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    func le32(_ v: UInt32) -> [UInt8] { le16(UInt16(v & 0xFFFF)) + le16(UInt16(v >> 16)) }
    func attribute(_ type: UInt16, _ value: [UInt8]) -> [UInt8] {
        let body = le16(UInt16(4 + value.count)) + le16(type) + value
        return body + [UInt8](repeating: 0, count: (4 - body.count % 4) % 4)
    }
    let body =
        [family, 0, 0, 0] + le32(index) + le16(state) + [0, 1] + attribute(1, address) + (mac.map { attribute(2, $0) } ?? [])
    return le32(UInt32(16 + body.count)) + le16(28) + le16(2) + le32(1) + le32(0) + body
}

let doneMessage: [UInt8] = [20, 0, 0, 0, 3, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]

@Suite struct NetlinkTests {
    @Test func parsesNeighbourEntriesOfBothFamiliesUntilDone() {
        let v4 = neighborMessage(
            family: 2, index: 7, state: Netlink.State.reachable, address: [10, 0, 0, 1], mac: [2, 0, 0, 0, 0, 0xFE])
        let v6 = neighborMessage(
            family: 10, index: 7, state: Netlink.State.stale, address: [0xFD, 0] + [UInt8](repeating: 0, count: 13) + [1],
            mac: [2, 0, 0, 0, 1, 0xFE])
        let incomplete = neighborMessage(family: 2, index: 3, state: Netlink.State.incomplete, address: [10, 0, 0, 9], mac: nil)
        let parsed = Netlink.parse(v4 + v6 + incomplete + doneMessage)
        #expect(parsed.done && parsed.error == nil)
        #expect(
            parsed.neighbors == [
                Netlink.Neighbor(
                    interfaceIndex: 7, address: IPAddress("10.0.0.1")!, mac: MACAddress("02:00:00:00:00:fe"), state: 2),
                Netlink.Neighbor(
                    interfaceIndex: 7, address: IPAddress("fd00::1")!, mac: MACAddress("02:00:00:00:01:fe"), state: 4),
                Netlink.Neighbor(interfaceIndex: 3, address: IPAddress("10.0.0.9")!, mac: nil, state: 1),
            ])
    }

    @Test func truncatedOrLyingLengthsEndTheParseWithoutCrashing() {
        let v4 = neighborMessage(family: 2, index: 7, state: 2, address: [10, 0, 0, 1], mac: [2, 0, 0, 0, 0, 0xFE])
        for cut in 0..<v4.count {
            let parsed = Netlink.parse(Array(v4[0..<cut]))
            #expect(parsed.neighbors.isEmpty && !parsed.done)
        }
        var lying = v4
        lying[16 + 12] = 200  // NDA_DST claims 200 bytes
        #expect(Netlink.parse(lying).neighbors.isEmpty)
    }

    @Test func anErrorMessageCarriesItsErrno() {
        let error: [UInt8] =
            [36, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0] + [0xEA, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0, count: 16)
        #expect(Netlink.parse(error).error == 22)
    }

    /// The nudge is an empty datagram to the address's discard port through the named interface:
    /// a UDP socket on loopback port 9 receives it, for IPv4 and IPv6.
    @Test func theNudgeReachesTheAddressItNames() throws {
        for (text, family) in [("127.0.0.1", AF_INET), ("::1", AF_INET6)] {
            let address = IPAddress(text)!
            let fd = socket(family, Int32(SOCK_DGRAM.rawValue), 0)
            #expect(fd >= 0)
            defer { close(fd) }
            var (storage, length) = Netlink.socketAddress(address, port: 9)
            let bound = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            guard bound == 0 else {
                Issue.record("cannot bind \(text) port 9 (root needed, port free): \(String(cString: strerror(errno)))")
                continue
            }
            #expect(Netlink.nudge(address, interface: "lo") == nil)
            var buffer = [UInt8](repeating: 0, count: 16)
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            #expect(n == 0, "\(text): recv \(n)")
        }
    }

    /// The real kernel answers the dump (this machine's table, whatever is in it).
    @Test func theKernelAnswersANeighbourDump() {
        if case .failure(let e) = Netlink.neighbors() { Issue.record("\(e)") }
    }
}

@Suite struct NeighborWatcherTests {
    let router = MACAddress("02:00:00:00:00:fe")!
    let gatewayAddress = IPAddress("10.0.0.1")!

    func entry(_ state: UInt16, _ mac: MACAddress?) -> Netlink.Neighbor {
        Netlink.Neighbor(interfaceIndex: 5, address: gatewayAddress, mac: mac, state: state)
    }

    @Test func decidesWhichMACWorkersUseAndWhenToAskTheKernelAgain() {
        typealias S = Netlink.State
        let old = MACAddress("02:00:00:00:00:aa")!
        #expect(NeighborWatcher.decide(nil, current: PortContext.unknownMAC) == (PortContext.unknownMAC, true))
        #expect(NeighborWatcher.decide(nil, current: old) == (old, true))
        #expect(NeighborWatcher.decide(entry(S.reachable, router), current: old) == (router, false))
        #expect(NeighborWatcher.decide(entry(S.permanent, router), current: old) == (router, false))
        #expect(NeighborWatcher.decide(entry(S.stale, router), current: old) == (router, true))
        #expect(NeighborWatcher.decide(entry(S.incomplete, nil), current: old) == (old, false))
        #expect(NeighborWatcher.decide(entry(S.failed, router), current: old) == (PortContext.unknownMAC, true))
    }

    @Test func aPollPublishesTheMACLogsChangesAndNudgesWhileUnresolved() {
        var table: [Netlink.Neighbor] = []
        var nudges = 0
        var lines: [String] = []
        let cell = GatewayCell()
        let watcher = NeighborWatcher(
            targets: [NeighborWatcher.Target(port: 0, gateway: gatewayAddress, interface: "tern0", cell: cell)],
            log: { lines.append("\($0): \($1)") }, neighbors: { .success(table) },
            nudge: { address, interface in
                #expect(address == IPAddress("10.0.0.1")! && interface == "tern0")
                nudges += 1
                return nil
            }, interfaceIndex: { _ in 5 })
        watcher.poll()
        #expect(cell.mac == PortContext.unknownMAC && nudges == 1 && lines.isEmpty)
        table = [entry(Netlink.State.reachable, router)]
        watcher.poll()
        #expect(cell.mac == router && nudges == 1 && lines == ["info: port[0] gateway 10.0.0.1 is at 02:00:00:00:00:fe"])
        #expect(
            watcher.status.first?.mac == "02:00:00:00:00:fe" && watcher.status.first?.state == "reachable")
        table = [entry(Netlink.State.failed, nil)]
        watcher.poll()
        #expect(
            cell.mac == PortContext.unknownMAC && nudges == 2
                && lines.last?.hasPrefix("warning: port[0] gateway 10.0.0.1: unreachable") == true)
        // Another interface's entry for the same address is not ours.
        table = [Netlink.Neighbor(interfaceIndex: 9, address: gatewayAddress, mac: router, state: Netlink.State.reachable)]
        watcher.poll()
        #expect(cell.mac == PortContext.unknownMAC)
    }
}
