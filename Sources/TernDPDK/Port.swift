// Ethernet ports and the mbuf pool. Each wrapper names the rte_* call it makes.

import CDPDK
import TernWire

/// A pool of packet buffers (`rte_pktmbuf_pool_create`).
public final class Mempool: @unchecked Sendable {
    public let pointer: OpaquePointer

    /// `dataRoom` excludes the headroom (RTE_PKTMBUF_HEADROOM), which is added; `privateSize`
    /// bytes (a multiple of 8) per mbuf are for the application.
    public init(name: String, count: UInt32, cache: UInt32, dataRoom: UInt16, privateSize: UInt16 = 0) throws(DPDKError) {
        let room = dataRoom + UInt16(RTE_PKTMBUF_HEADROOM)
        guard let p = rte_pktmbuf_pool_create(name, count, cache, privateSize, room, EAL.socketID) else {
            throw DPDKError("rte_pktmbuf_pool_create(\(name), \(count) mbufs)", code: tern_errno())
        }
        pointer = p
    }

    /// Mbufs currently taken from the pool (`rte_mempool_in_use_count`).
    public var inUse: Int { Int(rte_mempool_in_use_count(pointer)) }

    /// Calls `rte_mempool_free`.
    public func free() { rte_mempool_free(pointer) }
}

public struct Port: Sendable {
    public let id: UInt16
    public let name: String

    /// The port named `name` (a vdev name or PCI address), via `rte_eth_dev_get_port_by_name`.
    public init(named name: String) throws(DPDKError) {
        var id: UInt16 = 0
        let rc = rte_eth_dev_get_port_by_name(name, &id)
        guard rc == 0 else {
            throw DPDKError("no DPDK port named \"\(name)\" (ports: \(Port.allNames.joined(separator: ", ")))")
        }
        self.id = id
        self.name = name
    }

    /// Names of every probed port.
    public static var allNames: [String] {
        var names: [String] = []
        var id = rte_eth_find_next_owned_by(0, 0)
        while id < UInt64(RTE_MAX_ETHPORTS) {
            var buffer = [CChar](repeating: 0, count: Int(RTE_ETH_NAME_MAX_LEN))
            if rte_eth_dev_get_name_by_port(UInt16(id), &buffer) == 0 {
                names.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
            id = rte_eth_find_next_owned_by(UInt16(id + 1), 0)
        }
        return names
    }

    /// The port's MAC address (`rte_eth_macaddr_get`).
    public var mac: MACAddress {
        var a = rte_ether_addr()
        _ = rte_eth_macaddr_get(id, &a)
        let b = a.addr_bytes
        return MACAddress(
            value: UInt64(b.0) << 40 | UInt64(b.1) << 32 | UInt64(b.2) << 24 | UInt64(b.3) << 16 | UInt64(b.4) << 8 | UInt64(b.5))
    }

    /// Configures `rxQueues` RX queues and `txQueues` TX queues (RSS over the 5-tuple when several
    /// RX queues and the device has it) and sets each up with `descriptors` entries
    /// (`rte_eth_dev_configure`, `rte_eth_rx_queue_setup`, `rte_eth_tx_queue_setup`). Returns
    /// whether RSS is on.
    public func configure(
        rxQueues: UInt16, txQueues: UInt16, descriptors: (rx: UInt16, tx: UInt16), pool: Mempool
    ) throws(DPDKError) -> Bool {
        var rss: UInt64 = 0
        var rc = tern_port_configure(id, rxQueues, txQueues, 1, &rss)
        guard rc == 0 else {
            throw DPDKError("rte_eth_dev_configure(\(name), \(rxQueues) RX / \(txQueues) TX queues)", code: rc)
        }
        // Sizes come checked against the device's limits (`DescriptorLimits`).
        let (rxDescriptors, txDescriptors) = descriptors
        let socket = UInt32(bitPattern: Int32(rte_eth_dev_socket_id(id)))
        for q in 0..<rxQueues {
            rc = rte_eth_rx_queue_setup(id, q, rxDescriptors, socket, nil, pool.pointer)
            guard rc == 0 else { throw DPDKError("rte_eth_rx_queue_setup(\(name), queue \(q))", code: rc) }
        }
        for q in 0..<txQueues {
            rc = rte_eth_tx_queue_setup(id, q, txDescriptors, socket, nil)
            guard rc == 0 else { throw DPDKError("rte_eth_tx_queue_setup(\(name), queue \(q))", code: rc) }
        }
        return rss != 0
    }

    /// The same number of RX and TX queues.
    public func configure(queues: UInt16, descriptors: UInt16, pool: Mempool) throws(DPDKError) -> Bool {
        var rx = descriptors
        var tx = descriptors
        _ = rte_eth_dev_adjust_nb_rx_tx_desc(id, &rx, &tx)
        return try configure(rxQueues: queues, txQueues: queues, descriptors: (rx, tx), pool: pool)
    }

    /// Descriptor limits per RX and TX queue, and the largest MTU the device takes
    /// (`rte_eth_dev_info_get`: max_mtu, and max_rx_pktlen less the frame overhead).
    public var limits: (rx: (min: Int, max: Int, align: Int), tx: (min: Int, max: Int, align: Int), maxMTU: Int) {
        var info = rte_eth_dev_info()
        guard rte_eth_dev_info_get(id, &info) == 0 else {
            return ((0, Int(UInt16.max), 1), (0, Int(UInt16.max), 1), Int(UInt16.max))
        }
        let r = info.rx_desc_lim
        let t = info.tx_desc_lim
        // ethdev refuses an MTU whose frame exceeds max_rx_pktlen, with this overhead (rte_ethdev.c).
        let maxMTU = Int(info.max_mtu)
        let overhead = maxMTU != Int(UInt16.max) && Int(info.max_rx_pktlen) > maxMTU ? Int(info.max_rx_pktlen) - maxMTU : 18
        return (
            (Int(r.nb_min), Int(r.nb_max), Int(r.nb_align)), (Int(t.nb_min), Int(t.nb_max), Int(t.nb_align)),
            min(maxMTU, Int(info.max_rx_pktlen) - overhead)
        )
    }

    /// The arguments the device was created with (`rte_dev_devargs`), "" for none.
    public var devargs: String { String(cString: tern_port_devargs(id)) }

    /// Sets the device's MTU when it differs (`rte_eth_dev_get_mtu`, `rte_eth_dev_set_mtu`);
    /// false when the device has no MTU to set (-ENOTSUP: net_pcap, net_ring, net_null).
    public func setMTU(_ mtu: Int) throws(DPDKError) -> Bool {
        var current: UInt16 = 0
        if rte_eth_dev_get_mtu(id, &current) == 0 && Int(current) == mtu { return true }
        let rc = rte_eth_dev_set_mtu(id, UInt16(mtu))
        if rc == -Int32(ENOTSUP) { return false }
        guard rc == 0 else { throw DPDKError("rte_eth_dev_set_mtu(\(name), \(mtu))", code: rc) }
        return true
    }

    /// Link state and speed in Mb/s (`tern_port_link`, i.e. `rte_eth_link_get_nowait`).
    public var link: (up: Bool, speedMbps: UInt32) {
        var speed: UInt32 = 0
        let status = tern_port_link(id, &speed)
        return (status == 1, speed)
    }

    /// The device's counters (`rte_eth_stats_get`): ipackets, opackets, imissed, rx_nombuf,
    /// ierrors, oerrors.
    public var stats: [(String, UInt64)] {
        var s = rte_eth_stats()
        guard rte_eth_stats_get(id, &s) == 0 else { return [] }
        return [
            ("ipackets", s.ipackets), ("opackets", s.opackets), ("imissed", s.imissed), ("rx_nombuf", s.rx_nombuf),
            ("ierrors", s.ierrors), ("oerrors", s.oerrors),
        ]
    }

    /// Calls `rte_eth_dev_start`.
    public func start() throws(DPDKError) {
        let rc = rte_eth_dev_start(id)
        guard rc == 0 else { throw DPDKError("rte_eth_dev_start(\(name))", code: rc) }
    }

    /// Calls `rte_eth_dev_stop` then `rte_eth_dev_close` (net_pcap flushes its output file here).
    public func stopAndClose() {
        _ = rte_eth_dev_stop(id)
        _ = rte_eth_dev_close(id)
    }
}
