// The DPDK side of ternd: ports, the mbuf pool and one worker loop per worker lcore, started from
// the config; stopped, closed and accounted for at the end.

import TernBalancing
import TernConfig
import TernDPDK
import TernDataplane
import TernMetrics
import TernPcap
import TernWire

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
    /// Learned next hops by port index (`[[port]] gateway` without `gateway_mac`).
    let gateways: [Int: GatewayCell]
    /// Mbufs in the pool (the plan's, or `dataplane.mbufs`) and whether the ports spread flows by
    /// RSS, for the start-up line.
    let mbufs: UInt32
    let mbufPlan: MbufPlan
    let rss: Bool

    /// Opens the config's ports, sizes the pool, and launches a worker loop per worker lcore.
    init(config: TernConfig, configPath: String, cell: SnapshotCell, idleSleepMicroseconds: UInt32) throws {
        let workers = config.dataplane.workers
        let lcores = EAL.workerLcores
        guard lcores.count >= workers else {
            throw StartupError(
                message: "\(configPath): dataplane.workers = \(workers) needs \(workers) worker lcores besides the main one; "
                    + "EAL has \(lcores.count) (use -l 0-\(workers))",
                exitCode: ConfigError.exitCode)
        }
        var ports: [Port] = []
        for (i, p) in config.ports.enumerated() {
            do {
                ports.append(try Port(named: p.device))
            } catch {
                throw StartupError(
                    message: "\(configPath): port[\(i)].device: \(error.description)", exitCode: ConfigError.exitCode)
            }
        }
        self.ports = ports
        let hostPorts = config.ports.indices.filter { config.ports[$0].hostInterface != nil }
        var descriptors: [(rx: Int, tx: Int)] = []
        // net_af_packet ports: their ring-frame size (`AFPacketFrames`); nil for other devices.
        let frameSizes = ports.map { AFPacketFrames.frameSize(device: $0.name, devargs: $0.devargs) }
        for (i, port) in ports.enumerated() {
            let limits = port.limits
            let device = "port[\(i)] (\(port.name))"
            let rx = DescriptorLimits(min: limits.rx.min, max: limits.rx.max, align: limits.rx.align)
                .descriptors(requested: config.dataplane.rxDescriptors, key: ConfigSchema.rxDescriptors, device: device)
            let tx = DescriptorLimits(min: limits.tx.min, max: limits.tx.max, align: limits.tx.align)
                .descriptors(requested: config.dataplane.txDescriptors, key: ConfigSchema.txDescriptors, device: device)
            switch (rx, tx) {
            case (.success(let r), .success(let t)): descriptors.append((r, t))
            case (.failure(let problem), _), (_, .failure(let problem)):
                throw StartupError(
                    message: "\(configPath): \(problem.keyPath): \(problem.message)", exitCode: ConfigError.exitCode)
            }
            let mtu = config.ports[i].mtu
            if let frameSize = frameSizes[i] {
                let needed = AFPacketFrames.frameSizeNeeded(mtu: mtu)
                if frameSize < needed {
                    throw StartupError(
                        message:
                            "\(configPath): port[\(i)].mtu: \(mtu) needs framesz=\(needed) or more on \(port.name) (it has \(frameSize))",
                        exitCode: ConfigError.exitCode)
                }
            } else if mtu > limits.maxMTU {
                throw StartupError(
                    message: "\(configPath): port[\(i)].mtu: \(mtu) is more than \(port.name) takes (\(limits.maxMTU))",
                    exitCode: ConfigError.exitCode)
            }
        }
        let sizes = MbufPlan.compute(
            workers: workers, burstSize: config.dataplane.burstSize, descriptors: descriptors, hostPorts: hostPorts,
            replayPackets: ports.reduce(0) { $0 + Dataplane.replayedPackets($1) }, heldFragments: FragmentTable.heldCapacity)
        mbufPlan = sizes
        mbufs = UInt32(config.dataplane.mbufs ?? sizes.total)
        let dataRoom = frameSizes.compactMap { $0 }.reduce(MbufPlan.dataRoom(mtus: config.ports.map(\.mtu))) {
            max($0, AFPacketFrames.dataRoom(frameSize: $1))
        }
        do {
            pool = try Mempool(
                name: "tern_mbufs", count: mbufs, cache: UInt32(MbufPlan.cachePerLcore), dataRoom: UInt16(dataRoom))
        } catch {
            throw StartupError(
                message: "\(configPath): dataplane.mbufs: a pool of \(mbufs) mbufs of \(dataRoom) bytes: \(error.description)",
                exitCode: ConfigError.exitCode)
        }
        var rss = false
        for (i, port) in ports.enumerated() {
            do {
                rss =
                    try port.configure(
                        rxQueues: UInt16(workers), txQueues: UInt16(workers),
                        descriptors: (UInt16(descriptors[i].rx), UInt16(descriptors[i].tx)), pool: pool) || rss
            } catch {
                // Queue set-up takes mbufs (RX rings; net_pcap's replayed capture): name the key to raise.
                let short = config.dataplane.mbufs.map { $0 < sizes.total ? " (the computed size is \(sizes.total))" : "" } ?? ""
                throw StartupError(
                    message: "\(configPath): port[\(i)].device: \(error.description); the pool has \(mbufs) mbufs\(short): "
                        + "raise dataplane.mbufs or lower dataplane.rx_descriptors",
                    exitCode: ConfigError.exitCode)
            }
            do {
                // af_packet: the kernel interface's MTU counts (checked against framesz above).
                if frameSizes[i] == nil { _ = try port.setMTU(config.ports[i].mtu) }
            } catch {
                throw StartupError(message: "\(configPath): port[\(i)].mtu: \(error.description)", exitCode: ConfigError.exitCode)
            }
            try port.start()
        }
        self.rss = rss
        var links: [HostPathLoop.Link] = []
        var taps: [Port] = []
        for i in hostPorts {
            let name = config.ports[i].hostInterface!
            let path = "\(configPath): port[\(i)].host_interface"
            guard if_nametoindex(name) == 0 else {
                throw StartupError(message: "\(path): an interface named \(name) exists already", exitCode: ConfigError.exitCode)
            }
            let tap: Port
            do {
                tap = try HostInterface.create(name: name, mac: config.ports[i].mac ?? ports[i].mac)
                _ = try tap.configure(queues: 1, descriptors: UInt16(descriptors[i].rx), pool: pool)
                try tap.start()
            } catch {
                throw StartupError(message: "\(path): \(error.description)", exitCode: ConfigError.exitCode)
            }
            taps.append(tap)
            let rings = try (0..<workers).map { w throws(DPDKError) in
                try MbufRing(name: "tern_host_\(i)_\(w)", count: UInt32(MbufPlan.hostRingSize))
            }
            let back = try MbufRing(name: "tern_host_\(i)_back", count: UInt32(MbufPlan.hostRingSize))
            links.append(HostPathLoop.Link(tap: tap.id, toKernel: rings, fromKernel: back))
        }
        self.taps = taps
        hostPath = links.isEmpty ? nil : HostPathLoop(links: links)
        let hostLinks = Dictionary(uniqueKeysWithValues: zip(hostPorts, links))
        let plan = PortPlan(config.ports, deviceMACs: ports.map(\.mac))
        let gateways = Dictionary(
            uniqueKeysWithValues: config.ports.indices.filter { config.ports[$0].learnsGateway }.map { ($0, GatewayCell()) })
        self.gateways = gateways
        var loops: [WorkerLoop] = []
        for w in 0..<workers {
            let queues = plan.routes.map { r in
                WorkerQueue(
                    rxPort: ports[r.rx].id, queue: UInt16(w), backendPort: ports[r.backend].id, context: r.context,
                    hostRing: hostLinks[r.rx]?.toKernel[w].pointer,
                    fromHostRing: w == 0 ? hostLinks[r.rx]?.fromKernel.pointer : nil, gateway: gateways[r.backend]?.word,
                    replyGateway: gateways[r.rx]?.word)
            }
            let worker = Worker(
                index: w, port: queues[0].context, flowTableEntries: config.dataplane.flowTableEntries,
                tcpIdleTimeout: UInt32(config.dataplane.tcpIdleTimeoutSeconds),
                udpIdleTimeout: UInt32(config.dataplane.udpIdleTimeoutSeconds),
                tcpClosingTimeout: UInt32(config.dataplane.tcpClosingTimeoutSeconds),
                tooBigRepliesPerSecond: UInt32(config.icmp.tooBigPerSecond),
                echoRepliesPerSecond: UInt32(config.icmp.echoPerSecond))
            loops.append(
                WorkerLoop(
                    index: w, queues: queues, burstSize: config.dataplane.burstSize, cell: cell, worker: worker,
                    idleSleepMicroseconds: idleSleepMicroseconds))
        }
        self.loops = loops
        try hostPath?.start()
        for (w, loop) in loops.enumerated() { try Lcore.launch(loop, on: lcores[w]) }
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

    /// Packets received so far over all workers (live reads of their blocks: for the idle timer).
    var progress: UInt64 { loops.reduce(0) { $0 + $1.stats.load(CounterSlot.rx) } }

    /// Stops the workers (they flush TX before returning) and closes the ports; returns the mbufs
    /// still in use, then frees the pool. The workers' counters stay readable (their blocks live
    /// as long as the loops).
    func stop() -> Int {
        for loop in loops { loop.requestStop() }
        Lcore.waitAll()
        hostPath?.stopAndJoin()
        for port in ports + taps { port.stopAndClose() }
        let inUse = pool.inUse
        pool.free()
        return inUse
    }
}
