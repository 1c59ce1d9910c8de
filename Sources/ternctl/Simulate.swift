import ArgumentParser
import TernBalancing
import TernConfig
import TernDataplane
import TernMetrics
import TernPcap
import TernTelemetry

#if canImport(Glibc)
    import Glibc
#endif

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every packet of a pcap, in order, through the packet path (one worker); write what Tern would transmit.",
        discussion: """
            Forwarded (encapsulated) and replied (ICMP echo reply, ICMP too big) packets are written to --out with their input \
            timestamps; packets for the host and drops are counted only. The flow-table clock follows the \
            capture timestamps. The capture arrives on [[port]] number --port (0: the first); encapsulated \
            packets take the MACs and MTU of its backend_device, replies its own, as in ternd. A port without a mac \
            key stands in as 02:00:00:00:00:01.
            """)

    @Option(help: "The TOML config file.")
    var config: String

    @Option(name: .customLong("in"), help: "Input pcap (Ethernet).")
    var input: String

    @Option(name: .customLong("out"), help: "Output pcap: what Tern would transmit.")
    var output: String

    @Option(help: "Index of the [[port]] the capture arrives on.")
    var port = 0

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        let c = try loadConfig(config)
        guard c.ports.indices.contains(port) else {
            throw ValidationError("--port \(port): \(config) has \(c.ports.count) [[port]] table(s), numbered from 0")
        }
        let reader: PcapReader
        let writer: PcapWriter
        do {
            reader = try PcapReader(path: input)
        } catch {
            printError(error.description)
            throw ExitCode(66)
        }
        do {
            writer = try PcapWriter(path: output)
        } catch {
            printError(error.description)
            throw ExitCode(73)
        }
        let worker = Worker(
            index: 0, port: PortPlan(simulating: c.ports).routes[port].context,
            settings: WorkerSettings(
                flowTableEntries: c.dataplane.flowTableEntries, tcpIdleTimeout: UInt32(c.dataplane.tcpIdleTimeoutSeconds),
                udpIdleTimeout: UInt32(c.dataplane.udpIdleTimeoutSeconds),
                tcpClosingTimeout: UInt32(c.dataplane.tcpClosingTimeoutSeconds),
                tooBigRepliesPerSecond: UInt32(c.icmp.tooBigPerSecond), echoRepliesPerSecond: UInt32(c.icmp.echoPerSecond)))
        var simulator = Simulator(snapshot: ForwardingSnapshot(c.snapshotSpec, generation: 1), worker: worker)
        // Streamed record by record: memory stays constant whatever the capture's size.
        var sent: UInt64 = 0
        var elapsed: UInt64 = 0
        do {
            while let r = try reader.next() {
                let started = monotonicNanoseconds()
                let result = simulator.run(r.data, timestampNanoseconds: r.timestampNanoseconds)
                // Fragments held ahead of their first leave after it.
                let results = [result] + simulator.takeReleased()
                elapsed += monotonicNanoseconds() - started
                for case (let outcome, let frame?) in results {
                    // What the wire carries: outer fragments of a packet too big for the tunnel.
                    for data in simulator.frames(outcome, frame) {
                        try writer.append(PcapRecord(timestampNanoseconds: r.timestampNanoseconds, data: data))
                        sent += 1
                    }
                }
            }
            simulator.finish()
            try writer.close()
        } catch {
            printError(error.description)
            throw ExitCode(error.description.hasPrefix(output) ? 74 : 65)
        }
        // A cut-off last record ends the capture, as libpcap (and so ternd's net_pcap) reads it.
        if let t = reader.truncation { printError("note: \(t); ignored, as libpcap and ternd's net_pcap do") }
        var totals = PacketTotals()
        totals.add(simulator.snapshot)
        let received = simulator.worker.counters.received
        let nsPerPacket = received == 0 ? 0 : elapsed / received
        let report = TrafficReport(
            outcomes: simulator.worker.counters, totals: totals, flows: simulator.worker.flows.counters,
            extra: [
                ("tx", sent), ("ns_per_packet", nsPerPacket), ("truncated_records", reader.truncation == nil ? 0 : 1),
            ] + CounterSlot.features.map { ($0.name, simulator.worker.stats.load($0.slot)) })
        print(json ? report.json : report.text)
    }
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
