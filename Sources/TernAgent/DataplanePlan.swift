// What the config asks of the DPDK side, decided without DPDK: per port its ring sizes and whether
// its MTU is set on the device, the mbuf pool, the host path's ports, the learned next hops, the
// queue routes and the workers' settings. ternd reads the devices' facts (`DeviceFacts`), makes
// the plan, and only carries it out (Sources/ternd/Dataplane.swift); a config the devices cannot
// serve is refused with problems keyed by schema key, as `ternctl check` names them.

import TernConfig
import TernDataplane
import TernWire

extension WorkerSettings {
    /// The workers' settings the config gives (`[dataplane]`, `[icmp]`).
    public init(config: TernConfig) {
        self.init(
            flowTableEntries: config.dataplane.flowTableEntries, tcpIdleTimeout: UInt32(config.dataplane.tcpIdleTimeoutSeconds),
            udpIdleTimeout: UInt32(config.dataplane.udpIdleTimeoutSeconds),
            tcpClosingTimeout: UInt32(config.dataplane.tcpClosingTimeoutSeconds),
            tooBigRepliesPerSecond: UInt32(config.icmp.tooBigPerSecond), echoRepliesPerSecond: UInt32(config.icmp.echoPerSecond))
    }
}

/// What ternd learns from an opened device before it configures it (a test sets what it needs).
public struct DeviceFacts: Sendable, Equatable {
    public var name: String
    public var mac: MACAddress
    /// The device's arguments (`--vdev NAME,ARGS`): net_af_packet's framesz, net_pcap's replays.
    public var devargs = ""
    public var rxLimits = DescriptorLimits(min: 1, max: 65_535, align: 1)
    public var txLimits = DescriptorLimits(min: 1, max: 65_535, align: 1)
    public var maxMTU = ConfigSchema.portMTU.range!.upperBound
    /// Packets a net_pcap device replaying its capture keeps in mbufs (0 for other devices).
    public var replayedPackets = 0
    /// A kernel interface opened with AF_XDP (net_af_xdp): the kernel's MTU counts, and each RX
    /// queue holds `AFXDPFrames.fillRing` mbufs whatever its descriptors.
    public var afXDP = false

    public init(name: String, mac: MACAddress) {
        self.name = name
        self.mac = mac
    }
}

/// DPDK 22.11's net_af_xdp fills each RX queue's fill ring with this many mbufs (the ring's
/// default size), whatever `rx_descriptors` says, and returns them only when the process exits.
public enum AFXDPFrames {
    public static let fillRing = 2048
}

public struct DataplanePlan: Sendable {
    public struct PortSetup: Sendable, Equatable {
        public var rxDescriptors: Int
        public var txDescriptors: Int
        /// The MTU to set on the device; nil for net_af_packet, where the kernel interface's MTU
        /// counts (checked against its `framesz` instead).
        public var deviceMTU: Int?
    }

    public let workers: Int
    public let burstSize: Int
    /// Per `[[port]]`, in order.
    public let ports: [PortSetup]
    /// What each worker queue's port context and next hops are.
    public let routes: PortPlan
    /// Ports with `host_interface` (each gets a TAP and rings to and from the host-path thread).
    public let hostPorts: [Int]
    /// Ports whose next hop's MAC is learned (`gateway` without `gateway_mac`).
    public let learnedGateways: [Int]
    /// The pool: the computed plan, and the mbufs it has (`dataplane.mbufs` when set).
    public let mbufPlan: MbufPlan
    public let mbufs: Int
    let mbufsConfigured: Bool
    /// Bytes of frame each mbuf holds.
    public let dataRoom: Int
    public let worker: WorkerSettings

    /// The plan for `config` (read from `file`) on these devices (one per `[[port]]`, in order) with
    /// `workerLcores` lcores besides the main one; or every problem, keyed by the schema's key paths.
    public static func make(config: TernConfig, file: String, devices: [DeviceFacts], workerLcores: Int) -> Result<
        DataplanePlan, ConfigError
    > {
        precondition(devices.count == config.ports.count, "one device per [[port]]")
        typealias K = ConfigSchema
        let workers = config.dataplane.workers
        var problems: [ConfigProblem] = []
        if workerLcores < workers {
            problems.append(
                ConfigProblem(
                    K.workers.path,
                    "\(workers) needs \(workers) worker lcores besides the main one; EAL has \(workerLcores) (use -l 0-\(workers))"
                ))
        }
        var setups: [PortSetup] = []
        for (i, (port, device)) in zip(config.ports, devices).enumerated() {
            let name = "\(K.port.element(i)) (\(device.name))"
            let rx = device.rxLimits.descriptors(requested: config.dataplane.rxDescriptors, key: K.rxDescriptors, device: name)
            let tx = device.txLimits.descriptors(requested: config.dataplane.txDescriptors, key: K.txDescriptors, device: name)
            var setup = PortSetup(rxDescriptors: 0, txDescriptors: 0, deviceMTU: port.mtu)
            switch (rx, tx) {
            case (.success(let r), .success(let t)): (setup.rxDescriptors, setup.txDescriptors) = (r, t)
            case (.failure(let problem), _), (_, .failure(let problem)): problems.append(problem)
            }
            let mtuKey = K.portMTU.at(K.port.element(i))
            if device.afXDP {
                setup.deviceMTU = nil  // the kernel's interface: its MTU is the operator's
                if port.mtu > device.maxMTU {
                    problems.append(
                        ConfigProblem(mtuKey, "\(port.mtu) is more than AF_XDP takes on \(device.name) (\(device.maxMTU))"))
                }
            } else if let frameSize = AFPacketFrames.frameSize(device: device.name, devargs: device.devargs) {
                setup.deviceMTU = nil
                let needed = AFPacketFrames.frameSizeNeeded(mtu: port.mtu)
                if frameSize < needed {
                    problems.append(
                        ConfigProblem(
                            mtuKey, "\(port.mtu) needs framesz=\(needed) or more on \(device.name) (it has \(frameSize))"))
                }
            } else if port.mtu > device.maxMTU {
                problems.append(ConfigProblem(mtuKey, "\(port.mtu) is more than \(device.name) takes (\(device.maxMTU))"))
            }
            setups.append(setup)
        }
        guard problems.isEmpty else { return .failure(ConfigError(file: file, problems: problems)) }
        let hostPorts = config.ports.indices.filter { config.ports[$0].hostInterface != nil }
        let plan = MbufPlan.compute(
            workers: workers, burstSize: config.dataplane.burstSize,
            descriptors: zip(setups, devices).map { s, d in
                (d.afXDP ? max(s.rxDescriptors, AFXDPFrames.fillRing) : s.rxDescriptors, s.txDescriptors)
            }, hostPorts: hostPorts,
            replayPackets: devices.reduce(0) { $0 + $1.replayedPackets }, heldFragments: FragmentTable.heldCapacity)
        let frameSizes = devices.compactMap { AFPacketFrames.frameSize(device: $0.name, devargs: $0.devargs) }
        let dataRoom = frameSizes.reduce(MbufPlan.dataRoom(mtus: config.ports.map(\.mtu))) {
            max($0, AFPacketFrames.dataRoom(frameSize: $1))
        }
        return .success(
            DataplanePlan(
                workers: workers, burstSize: config.dataplane.burstSize, ports: setups,
                routes: PortPlan(config.ports, deviceMACs: devices.map(\.mac)), hostPorts: hostPorts,
                learnedGateways: config.ports.indices.filter { config.ports[$0].learnsGateway }, mbufPlan: plan,
                mbufs: config.dataplane.mbufs ?? plan.total, mbufsConfigured: config.dataplane.mbufs != nil, dataRoom: dataRoom,
                worker: WorkerSettings(config: config)))
    }

    /// The start-up line's account of the pool.
    public var mbufSummary: String { mbufsConfigured ? "\(mbufs) mbufs (\(ConfigSchema.mbufs.path))" : mbufPlan.summary }
}
