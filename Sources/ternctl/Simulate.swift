import ArgumentParser
import TernBalancing
import TernControl
import TernDataplane
import TernPcap

#if canImport(Glibc)
import Glibc
#endif

struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every packet of a pcap, in order, through the packet path (one worker); write what Tern would transmit.",
        discussion: """
            Forwarded (encapsulated) and replied (ICMP echo) packets are written to --out with their input \
            timestamps; packets for the host and drops are counted only. The flow-table clock follows the \
            capture timestamps. The source MAC is [[port]].mac of the first port, or 02:00:00:00:00:01.
            """)

    @Option(help: "The TOML config file.")
    var config: String

    @Option(name: .customLong("in"), help: "Input pcap (Ethernet).")
    var input: String

    @Option(name: .customLong("out"), help: "Output pcap: what Tern would transmit.")
    var output: String

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        let c = try loadConfig(config)
        let records: [PcapRecord]
        do {
            records = try Pcap.read(path: input)
        } catch {
            printError(error.description)
            throw ExitCode(66)
        }
        let port = c.ports[0]
        let worker = Worker(
            index: 0, port: PortContext(mac: port.mac ?? PortConfig.simulatedMAC, gatewayMAC: port.gatewayMAC, mtu: port.mtu),
            flowTableEntries: c.dataplane.flowTableEntries,
            tcpIdleTimeout: UInt32(c.dataplane.tcpIdleTimeoutSeconds), udpIdleTimeout: UInt32(c.dataplane.udpIdleTimeoutSeconds))
        var simulator = Simulator(snapshot: ForwardingSnapshot(c.snapshotSpec, generation: 1), worker: worker)
        var sent: [PcapRecord] = []
        let started = monotonicNanoseconds()
        for r in records {
            let (_, frame) = simulator.run(r.data, timestampNanoseconds: r.timestampNanoseconds)
            if let frame { sent.append(PcapRecord(timestampNanoseconds: r.timestampNanoseconds, data: frame)) }
        }
        let elapsed = monotonicNanoseconds() - started
        do {
            try Pcap.write(sent, path: output)
        } catch {
            printError(error.description)
            throw ExitCode(1)
        }
        let report = SimulationReport(
            config: c, counters: simulator.worker.counters, totals: simulator.snapshot.packetTotals(),
            flows: simulator.worker.flows.counters, elapsedNanoseconds: elapsed)
        print(json ? report.json : report.text, terminator: "")
    }
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Counts per verdict, drop reason, VIP and backend, as text or JSON.
struct SimulationReport {
    let config: TernConfig
    let counters: OutcomeCounters
    let totals: (perVIP: [UInt64], perBackend: [UInt64])
    let flows: FlowTableCounters
    let elapsedNanoseconds: UInt64

    /// Backend address → packets (summed over VIPs that share a backend), in config order.
    var perBackend: [(String, UInt64)] {
        var order: [String] = []
        var sums: [String: UInt64] = [:]
        var index = 0
        for v in config.vips {
            // The snapshot keeps each VIP's backends in address order.
            for b in v.backends.sorted(by: { $0.address < $1.address }) {
                let key = b.address.description
                if sums[key] == nil { order.append(key) }
                sums[key, default: 0] += totals.perBackend[index]
                index += 1
            }
        }
        return order.map { ($0, sums[$0]!) }
    }

    var perVIP: [(String, UInt64)] { zip(config.vips.map(\.name), totals.perVIP).map { ($0, $1) } }

    var nsPerPacket: Double {
        counters.received == 0 ? 0 : Double(elapsedNanoseconds) / Double(counters.received)
    }

    var text: String {
        var s = "rx \(counters.received)\n"
        for o in [Outcome.forwarded, .host, .replied] { s += "\(o.verdict.rawValue) \(counters[o])\n" }
        s += "dropped \(Outcome.dropReasons.reduce(0) { $0 + counters[$1] })\n"
        for o in Outcome.dropReasons where counters[o] > 0 { s += "  \(o.dropReason!) \(counters[o])\n" }
        for (name, n) in perVIP { s += "vip \(name) \(n)\n" }
        for (name, n) in perBackend { s += "backend \(name) \(n)\n" }
        s += "flows inserted \(flows.inserted) evicted \(flows.evicted)\n"
        s += "ns/packet \(Int(nsPerPacket.rounded()))\n"
        return s
    }

    var json: String {
        func object(_ pairs: [(String, UInt64)]) -> String {
            "{" + pairs.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        }
        let dropped = Outcome.dropReasons.map { ($0.dropReason!, counters[$0]) }
        return "{\"rx\":\(counters.received),\"forwarded\":\(counters[.forwarded]),\"host\":\(counters[.host]),"
            + "\"replied\":\(counters[.replied]),\"dropped\":\(object(dropped)),"
            + "\"per_vip\":\(object(perVIP)),\"per_backend\":\(object(perBackend)),"
            + "\"flows\":{\"inserted\":\(flows.inserted),\"evicted\":\(flows.evicted)},"
            + "\"ns_per_packet\":\(Int(nsPerPacket.rounded()))}\n"
    }
}
