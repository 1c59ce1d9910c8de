// How big ternd's rings, mbufs and buffers are: from the config, each device's limits and what
// net_pcap replays hold. Pure arithmetic, so every rule is unit-tested without DPDK; ternd asks
// the devices and reads the captures, then calls these.

/// A device's descriptor limits per queue (`rte_eth_dev_info.rx_desc_lim` / `tx_desc_lim`).
public struct DescriptorLimits: Equatable, Sendable {
    public var min: Int
    public var max: Int
    public var align: Int

    public init(min: Int, max: Int, align: Int) {
        self.min = min
        self.max = max
        self.align = Swift.max(1, align)
    }

    /// The ring size for `requested` (nil: the default, fitted to the device). A set value the
    /// device cannot take is refused with the key, the device and its limits.
    public func descriptors(requested: Int?, key: ConfigKey, device: String) -> Result<Int, ConfigProblem> {
        guard let requested else {
            let fitted = Swift.min(Swift.max(ConfigSchema.defaultDescriptors, min), max)
            return .success(fitted / align * align)
        }
        if requested < min || requested > max || requested % align != 0 {
            return .failure(
                ConfigProblem(
                    key.path,
                    "\(requested) does not fit \(device): it takes \(min)...\(max)"
                        + (align > 1 ? " in multiples of \(align)" : "")))
        }
        return .success(requested)
    }
}

/// The mbuf pool's size, by what holds mbufs. The start-up line prints it.
public struct MbufPlan: Equatable, Sendable {
    /// RX and TX descriptors of every worker queue of every port.
    public var rings: Int
    /// Bursts in flight, IP fragments held ahead of their first, per-lcore caches and slack.
    public var inFlight: Int
    /// TAP rings and the rings between workers and the host-path thread.
    public var hostPath: Int
    /// Packets net_pcap devices with `infinite_rx=1` keep in mbufs for the whole run.
    public var replay: Int

    public var total: Int { rings + inFlight + hostPath + replay }

    public static let cachePerLcore = 256
    public static let hostRingSize = 1024

    /// `descriptors`: each port's (rx, tx) ring sizes; `hostPorts`: ports with a host interface
    /// (their TAPs use the same ring sizes as their data port); `heldFragments`: fragments a worker
    /// may hold (`FragmentTable.heldCapacity`).
    public static func compute(
        workers: Int, burstSize: Int, descriptors: [(rx: Int, tx: Int)], hostPorts: [Int], replayPackets: Int, heldFragments: Int
    ) -> MbufPlan {
        let rings = descriptors.reduce(0) { $0 + workers * ($1.rx + $1.tx) }
        let inFlight =
            descriptors.count * workers * 4 * burstSize + workers * heldFragments + (workers + 1) * cachePerLcore + 1024
        let hostPath = hostPorts.reduce(0) { $0 + descriptors[$1].rx + descriptors[$1].tx + (workers + 1) * hostRingSize + 64 }
        return MbufPlan(rings: rings, inFlight: inFlight, hostPath: hostPath, replay: replayPackets)
    }

    public var summary: String {
        "\(total) mbufs (rings \(rings), in flight \(inFlight), host path \(hostPath), pcap replay \(replay))"
    }

    /// Bytes of frame an mbuf holds (headroom comes on top): the largest port MTU plus an Ethernet
    /// header and a VLAN tag, rounded up to a KiB (the granularity NICs' RX buffers come in; it
    /// also leaves net_af_packet the 66 bytes of frame header its `framesz` must hold besides
    /// the frame), at least 2,048, so a received frame is always one segment.
    public static func dataRoom(mtus: [Int]) -> Int {
        Swift.max(2048, ((mtus.max() ?? 1500) + 14 + 4 + 1023) / 1024 * 1024)
    }

    /// The captures a net_pcap device replays in a loop (`infinite_rx=1`) holds in mbufs: its
    /// `rx_pcap` files, from the device's arguments (`rx_pcap=FILE,...,infinite_rx=1`).
    public static func replayedCaptures(devargs: String) -> [String] {
        let pairs = devargPairs(devargs)
        let infinite = pairs.last { $0.key == "infinite_rx" }?.value == "1"
        return infinite ? pairs.filter { $0.key == "rx_pcap" }.map(\.value) : []
    }
}

/// net_af_packet (DPDK 22.11): received frames land in ring frames of `framesz` bytes (a devargs
/// key, default 2,048) behind a 66-byte header. The PMD reports 1,518-byte frames as its limit
/// whatever `framesz` is, and the MTU that counts is the kernel interface's, so ternd checks a
/// port's `mtu` against `framesz` instead of setting the device's MTU.
public enum AFPacketFrames {
    public static let defaultFrameSize = 2048
    /// Ring-frame bytes before the Ethernet header (TPACKET_V2 header and address, aligned).
    public static let header = 66
    /// Bytes the PMD asks of each mbuf's data room per ring frame (TPACKET2_HDRLEN less the address).
    public static let mbufShortfall = 32

    /// The ring-frame size of an af_packet device (nil: another kind of device).
    public static func frameSize(device: String, devargs: String) -> Int? {
        guard device.hasPrefix("net_af_packet") else { return nil }
        return devargPairs(devargs).first { $0.key == "framesz" }.flatMap { Int($0.value) } ?? defaultFrameSize
    }

    /// The smallest `framesz` that holds a frame of `mtu` (with Ethernet header and a VLAN tag):
    /// a multiple of 16, as the kernel aligns ring frames.
    public static func frameSizeNeeded(mtu: Int) -> Int { (mtu + 14 + 4 + header + 15) / 16 * 16 }

    /// The mbuf data room the PMD requires for ring frames of `frameSize`.
    public static func dataRoom(frameSize: Int) -> Int { frameSize - mbufShortfall }
}

/// A device's arguments (`key=value,key=value`, as `--vdev` takes them), in order.
func devargPairs(_ devargs: String) -> [(key: String, value: String)] {
    devargs.split(separator: ",").compactMap { pair in
        let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: " ") }
        return kv.count == 2 ? (kv[0], kv[1]) : nil
    }
}
