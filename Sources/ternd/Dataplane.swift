// The DPDK side of ternd: ports, the mbuf pool and one worker loop per worker lcore, started from
// the config; stopped, closed and accounted for at the end.

import TernAgent
import TernBalancing
import TernConfig
import TernDPDK
import TernDataplane
import TernMetrics
import TernPcap
import TernWire
import TernXDP

#if canImport(Glibc)
    import Glibc
#endif

struct StartupError: Error {
    var message: String
    var exitCode: Int32
}

final class Dataplane {
    let ports: [Port]
    let pool: Mempool
    let loops: [WorkerLoop]
    /// The host path (TAPs and their thread), when some port has `host_interface`.
    let hostPath: HostPathLoop?
    let taps: [Port]
    /// Host interfaces that existed before ternd (persistent TAPs): never stopped or closed, so
    /// the kernel keeps them up with their addresses and routes when ternd exits.
    let persistentTAPs: [Port]
    /// Mbufs drivers may hold until the process exits: persistent TAPs' RX queues (their
    /// descriptors), AF_XDP fill rings (`AFXDPFrames.fillRing` per queue) and TX completions.
    let keptMbufs: Int
    /// The XDP program's maps on each AF_XDP port (`af_xdp_interface`), by port index.
    let xdpFilters: [Int: XDPFilter]
    /// Learned next hops by port index (`[[port]] gateway` without `gateway_mac`).
    let gateways: [Int: GatewayCell]
    /// Where the workers look for a running capture (`ternctl capture`).
    let packetTap: PacketTap?
    /// What the config asks of the devices (ring sizes, pool, routes, workers), and whether the
    /// ports spread flows by RSS, for the start-up line.
    let plan: DataplanePlan
    let rss: Bool

    /// Opens the config's ports, plans them (`DataplanePlan`: every decision, unit-tested), creates
    /// the pool, configures and starts the ports, the host path and a worker loop per worker lcore.
    init(
        config: TernConfig, configPath: String, cell: SnapshotCell, idleSleepMicroseconds: UInt32,
        flowState: FlowStateFile? = nil, xdpProgram: String = ""
    ) throws {
        func refused(_ key: String, _ message: String) -> StartupError {
            StartupError(
                message: ConfigError(file: configPath, problems: [ConfigProblem(key, message)]).description,
                exitCode: ConfigError.exitCode)
        }
        typealias K = ConfigSchema
        var ports: [Port] = []
        for (i, p) in config.ports.enumerated() {
            if let interface = p.afXDPInterface {
                let key = K.portAFXDPInterface.at(K.port.element(i))
                let workers = config.dataplane.workers
                if let problem = AFXDPPort.problem(interface: interface, workers: workers, program: xdpProgram) {
                    throw refused(key, problem)
                }
                do {
                    if let note = try XDPAttachment.clearStale(interface) { log(.warning, note) }
                } catch {
                    throw refused(key, error.description)
                }
                do {
                    ports.append(
                        try AFXDPPort.create(device: p.device, interface: interface, workers: workers, program: xdpProgram))
                } catch {
                    throw refused(key, error.description)
                }
                continue
            }
            do {
                ports.append(try Port(named: p.device))
            } catch {
                throw refused(K.portDevice.at(K.port.element(i)), error.description)
            }
        }
        self.ports = ports
        let devices = zip(ports, config.ports).map { port, portConfig in
            let limits = port.limits
            var facts = DeviceFacts(name: port.name, mac: port.mac)
            facts.devargs = port.devargs
            facts.rxLimits = DescriptorLimits(min: limits.rx.min, max: limits.rx.max, align: limits.rx.align)
            facts.txLimits = DescriptorLimits(min: limits.tx.min, max: limits.tx.max, align: limits.tx.align)
            facts.maxMTU = limits.maxMTU
            facts.replayedPackets = Dataplane.replayedPackets(port)
            facts.afXDP = portConfig.afXDPInterface != nil
            return facts
        }
        let lcores = EAL.workerLcores
        switch DataplanePlan.make(config: config, file: configPath, devices: devices, workerLcores: lcores.count) {
        case .success(let p): plan = p
        case .failure(let error): throw StartupError(message: error.description, exitCode: ConfigError.exitCode)
        }
        let workers = plan.workers
        do {
            pool = try Mempool(
                name: "tern_mbufs", count: UInt32(plan.mbufs), cache: UInt32(MbufPlan.cachePerLcore),
                dataRoom: UInt16(plan.dataRoom))
        } catch {
            throw refused(K.mbufs.path, "a pool of \(plan.mbufs) mbufs of \(plan.dataRoom) bytes: \(error.description)")
        }
        var rss = false
        for (i, (port, setup)) in zip(ports, plan.ports).enumerated() {
            do {
                rss =
                    try port.configure(
                        rxQueues: UInt16(workers), txQueues: UInt16(workers),
                        descriptors: (UInt16(setup.rxDescriptors), UInt16(setup.txDescriptors)), pool: pool) || rss
            } catch {
                // Queue set-up takes mbufs (RX rings; net_pcap's replayed capture), but fails for other
                // reasons too (net_pcap: frames over the data room with infinite_rx) with the same
                // EINVAL: the driver's own line says which, so point at it and name the pool's key.
                let total = plan.mbufPlan.total
                let short = config.dataplane.mbufs.map { $0 < total ? " (the computed size is \(total))" : "" } ?? ""
                let pool =
                    "the pool has \(plan.mbufs) mbufs\(short): raise \(K.mbufs.path) or lower \(K.rxDescriptors.path)"
                throw refused(
                    (config.ports[i].afXDPInterface == nil ? K.portDevice : K.portAFXDPInterface).at(K.port.element(i)),
                    error.code == ENOMEM
                        ? "\(error.description); \(pool)"
                        : "\(error.description) (the driver's reason is logged above; if it asks for more mbufs, \(pool))")
            }
            do {
                if let mtu = setup.deviceMTU { _ = try port.setMTU(mtu) }
            } catch {
                throw refused(K.portMTU.at(K.port.element(i)), error.description)
            }
            try port.start()
        }
        self.rss = rss
        // The XDP program's VIP map, equal to the config before any socket takes packets.
        var filters: [Int: XDPFilter] = [:]
        for (i, p) in config.ports.enumerated() {
            guard let interface = p.afXDPInterface else { continue }
            do {
                let filter = try XDPFilter(interface: interface)
                try filter.sync(Dataplane.xdpVIPs(config))
                filters[i] = filter
            } catch {
                throw StartupError(message: "\(configPath): \(K.portAFXDPInterface.at(K.port.element(i))): \(error)", exitCode: 1)
            }
        }
        xdpFilters = filters
        var links: [HostPathLoop.Link] = []
        var taps: [Port] = []
        var persistentTAPs: [Port] = []
        // net_af_xdp: its fill rings, and what its TX rings sent but the kernel has not completed.
        var kept = zip(config.ports, plan.ports).filter { $0.0.afXDPInterface != nil }.reduce(0) {
            $0 + workers * (AFXDPFrames.fillRing + $1.1.txDescriptors)
        }
        for i in plan.hostPorts {
            let name = config.ports[i].hostInterface!
            let key = K.portHostInterface.at(K.port.element(i))
            // A persistent TAP is attached and left in place at exit, with its addresses, routes and
            // sockets: a BGP session over it outlives a restart shorter than its hold time.
            let persistent = if_nametoindex(name) != 0
            if persistent && HostInterface.isPersistentTAP(name) != true {
                throw refused(
                    key,
                    "an interface named \(name) exists already and is not a persistent multi-queue TAP (remove it, or make "
                        + "one for ternd to attach to: ip tuntap add dev \(name) mode tap multi_queue)")
            }
            let tap: Port
            do {
                tap = try HostInterface.create(name: name, mac: config.ports[i].mac ?? ports[i].mac)
                _ = try tap.configure(queues: 1, descriptors: UInt16(plan.ports[i].rxDescriptors), pool: pool)
                try tap.start()
            } catch {
                throw refused(key, error.description)
            }
            taps.append(tap)
            if persistent {
                persistentTAPs.append(tap)
                kept += plan.ports[i].rxDescriptors
            }
            let rings = try (0..<workers).map { w throws(DPDKError) in
                try MbufRing(name: "tern_host_\(i)_\(w)", count: UInt32(MbufPlan.hostRingSize))
            }
            let back = try MbufRing(name: "tern_host_\(i)_back", count: UInt32(MbufPlan.hostRingSize))
            links.append(HostPathLoop.Link(tap: tap.id, toKernel: rings, fromKernel: back))
        }
        self.taps = taps
        self.persistentTAPs = persistentTAPs
        keptMbufs = kept
        hostPath = links.isEmpty ? nil : HostPathLoop(links: links)
        let hostLinks = Dictionary(uniqueKeysWithValues: zip(plan.hostPorts, links))
        let gateways = Dictionary(uniqueKeysWithValues: plan.learnedGateways.map { ($0, GatewayCell()) })
        self.gateways = gateways
        var loops: [WorkerLoop] = []
        let tap = PacketTap()
        packetTap = tap
        for w in 0..<workers {
            let queues = plan.routes.routes.map { r in
                WorkerQueue(
                    rxPort: ports[r.rx].id, queue: UInt16(w), backendPort: ports[r.backend].id, context: r.context,
                    hostRing: hostLinks[r.rx]?.toKernel[w].pointer,
                    fromHostRing: w == 0 ? hostLinks[r.rx]?.fromKernel.pointer : nil, gateway: gateways[r.backend]?.word,
                    replyGateway: gateways[r.rx]?.word)
            }
            loops.append(
                WorkerLoop(
                    index: w, queues: queues, burstSize: plan.burstSize, cell: cell,
                    worker: Worker(
                        index: w, port: queues[0].context, settings: plan.worker, flowMemory: flowState?.memory(worker: w)),
                    idleSleepMicroseconds: idleSleepMicroseconds, clockBase: flowState?.clockBase ?? 1, tap: tap))
        }
        self.loops = loops
        try hostPath?.start()
        for (w, loop) in loops.enumerated() { try Lcore.launch(loop, on: lcores[w]) }
    }

    /// What the XDP programs redirect: every VIP of `config`.
    static func xdpVIPs(_ config: TernConfig) -> [XDPVIP] {
        config.vips.map { XDPVIP(address: $0.address, prefixLength: $0.prefixLength, port: $0.port, ipProtocol: $0.ipProtocol) }
    }

    /// Packets a net_pcap device replaying its capture (`infinite_rx=1`) holds in mbufs: the
    /// capture's records. 0 for other devices, or when the file cannot be read (DPDK says why).
    static func replayedPackets(_ port: Port) -> Int {
        MbufPlan.replayedCaptures(devargs: port.devargs).reduce(0) { total, path in
            guard let reader = try? PcapReader(path: path) else { return total }
            var n = 0
            while case .some(.some) = try? reader.next() { n += 1 }
            return total + n
        }
    }

}

/// What the control plane (TernAgent's `Agent`) sees of it.
extension Dataplane: DataplaneView {
    var portStatus: [PortStatus] {
        ports.enumerated().map { i, p in
            let link = p.link
            let xdp = xdpFilters[i]?.counters.map { ("xdp_\($0.name)", $0.value) } ?? []
            return PortStatus(
                name: p.name, linkUp: link.up, speedMbps: Int(link.speedMbps),
                stats: Dictionary(p.stats.map { ($0.0, UInt64($0.1)) } + xdp, uniquingKeysWith: { a, _ in a }))
        }
    }

    /// A reload's VIPs reach the XDP programs (VIPs added before removed ones go).
    func configApplied(_ config: TernConfig) {
        for (i, filter) in xdpFilters.sorted(by: { $0.key < $1.key }) {
            do {
                let change = try filter.sync(Dataplane.xdpVIPs(config))
                if change.added + change.removed > 0 {
                    log("\(config.ports[i].device): XDP program: \(change.added) VIP keys added, \(change.removed) removed")
                }
            } catch {
                log(.error, "\(config.ports[i].device): XDP program not updated, VIP traffic may go to the kernel: \(error)")
            }
        }
    }

    var counterBlocks: [CounterBlock] { loops.map(\.stats) }
    var hostCounters: CounterBlock? { hostPath?.stats }

    /// Packets received so far over all workers (live reads of their blocks: for the idle timer).
    var progress: UInt64 { loops.reduce(0) { $0 + $1.stats.load(CounterSlot.rx) } }
}

extension Dataplane {

    /// Stops the workers (they flush TX before returning) and closes the ports; returns the mbufs
    /// still in use, then frees the pool. The workers' counters stay readable (their blocks live
    /// as long as the loops).
    func stop() -> Int {
        for loop in loops { loop.requestStop() }
        Lcore.waitAll()
        hostPath?.stopAndJoin()
        for port in ports + taps where !persistentTAPs.contains(where: { $0.id == port.id }) { port.stopAndClose() }
        let inUse = pool.inUse
        pool.free()
        return inUse
    }
}
