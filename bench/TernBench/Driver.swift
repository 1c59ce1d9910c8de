// Which benchmarks run, and the table and JSON they produce.

import TernBalancing
import TernDPDK
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

struct BenchOptions {
    var quick = false
    var json: String? = nil
    var mode = "all"
    var scenario: String? = nil
    var passes: Int? = nil
    var callgrind: (scenario: String, passes: Int)? = nil

    static func parse(_ args: [String]) -> BenchOptions {
        var o = BenchOptions()
        var i = 0
        while i < args.count {
            switch args[i] {
            case "--quick": o.quick = true
            case "--json":
                i += 1
                o.json = args[i]
            case "--mode":
                i += 1
                o.mode = args[i]
            case "--scenario":
                i += 1
                o.scenario = args[i]
            case "--passes":
                i += 1
                o.passes = Int(args[i])
            case "--callgrind":
                o.callgrind = (args[i + 1], Int(args[i + 2]) ?? 1)
                i += 2
            default:
                print("unknown argument \(args[i])")
                exit(64)
            }
            i += 1
        }
        return o
    }
}

/// One line of results: a scenario in a mode.
struct Record {
    var scenario: String
    var mode: String
    var nsPerPacket: Double
    var mpps: Double { nsPerPacket > 0 ? 1000 / nsPerPacket : 0 }
    var baselineMpps: Double? = nil
    var instructionsPerPacket: Double? = nil
    var latency: (p50: Double, p99: Double, p999: Double)? = nil
    var zeroLossMpps: Double? = nil
    var note: String = ""

    var json: String {
        func num(_ x: Double?) -> String {
            guard let x, x.isFinite else { return "null" }
            return String(Double(Int(x * 1000)) / 1000)
        }
        var f = [
            "\"scenario\":\"\(scenario)\"", "\"mode\":\"\(mode)\"", "\"ns_per_packet\":\(num(nsPerPacket))",
            "\"mpps\":\(num(mpps))",
            "\"baseline_mpps\":\(num(baselineMpps))",
            "\"ratio_to_baseline\":\(num(baselineMpps.map { mpps / $0 }))",
            "\"instructions_per_packet\":\(num(instructionsPerPacket))", "\"zero_loss_mpps\":\(num(zeroLossMpps))",
        ]
        if let l = latency {
            f.append("\"latency_ns\":{\"p50\":\(num(l.p50)),\"p99\":\(num(l.p99)),\"p99_9\":\(num(l.p999))}")
        }
        if !note.isEmpty { f.append("\"note\":\"\(note)\"") }
        return "{" + f.joined(separator: ",") + "}"
    }
}

func fmt(_ x: Double?, _ digits: Int = 1) -> String {
    guard let x, x.isFinite else { return "-" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let v = (x * scale).rounded() / scale
    return String(v)
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

func machineDescription() -> String {
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    var model = "unknown CPU"
    if let f = fopen("/proc/cpuinfo", "r") {
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, 512, f) != nil {
            let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if s.hasPrefix("model name") {
                model = String(s.split(separator: ":", maxSplits: 1)[1].trimmingPrefix(" ").dropLast())
                break
            }
        }
        fclose(f)
    }
    return "\(sysconf(Int32(_SC_NPROCESSORS_ONLN))) x \(model), Linux \(release)"
}

func isoDate() -> String {
    var t = time(nil)
    var tm = tm()
    gmtime_r(&t, &tm)
    var buffer = [CChar](repeating: 0, count: 32)
    strftime(&buffer, 32, "%Y-%m-%dT%H:%M:%SZ", &tm)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func runBenchmarks(_ o: BenchOptions) -> Int32 {
    if let c = o.callgrind {
        guard let s = (Scenario.all(quick: true) + Scenario.all(quick: false)).first(where: { $0.name == c.scenario }) else {
            return 64
        }
        let arena = FrameArena(s)
        let r = runPipeline(s, arena: arena, passes: c.passes)
        print("\(s.name): \(r.packets) packets")
        return 0
    }
    var records: [Record] = []
    // One scenario (--scenario) means the packet modes only.
    if o.mode == "maglev" || (o.mode == "all" && o.scenario == nil) {
        for (m, n, skewed) in [(65537, 1000, false), (65537, 100, false), (65537, 10001, true)] {
            let ms = benchMaglev(m: m, n: n, skewed: skewed)
            let name = "maglev-\(m)x\(n)\(skewed ? "-skewed" : "")"
            print(
                "maglev build M=\(m) N=\(n)\(skewed ? " (one of weight 65535, the rest 1)" : ""): \(fmt(ms, 2)) ms (median of 11)"
            )
            records.append(
                Record(scenario: name, mode: "build", nsPerPacket: ms * 1e6, note: "ns_per_packet holds the build time in ns"))
        }
    }
    if o.mode == "reload" || (o.mode == "all" && o.scenario == nil) {
        for (v, b) in [(100, 100), (1000, 100)] {
            let r = benchReload(vips: v, backends: b)
            print(
                "reload \(v) VIPs x \(b) backends, one VIP changed: ids \(fmt(r.assign, 2)) ms + snapshot \(fmt(r.build, 2)) ms (median of 5)"
            )
            records.append(
                Record(
                    scenario: "reload-\(v)x\(b)", mode: "build", nsPerPacket: (r.assign + r.build) * 1e6,
                    note: "ns_per_packet holds the build time in ns"))
        }
    }
    if o.mode == "pipeline" || o.mode == "all" {
        print("\n" + pad("scenario", 24) + pad("mode", 10) + pad("ns/pkt", 9) + "Mpps")
        for s in Scenario.all(quick: o.quick) where o.scenario == nil || o.scenario == s.name {
            let arena = FrameArena(s)
            let r = runPipeline(s, arena: arena, passes: o.passes ?? (o.quick ? 3 : 4))
            // Every scenario is built to be forwarded in full: a figure that includes drops or
            // replies would measure a different path.
            guard r.forwarded == r.packets else {
                print("\(s.name): only \(r.forwarded) of \(r.packets) packets were forwarded")
                return 1
            }
            let rec = Record(scenario: s.name, mode: "pipeline", nsPerPacket: r.nsPerPacket)
            print(pad(s.name, 24) + pad("pipeline", 10) + pad(fmt(rec.nsPerPacket), 9) + fmt(rec.mpps, 2))
            records.append(rec)
        }
    }
    if o.mode == "dpdk" || o.mode == "all" {
        guard DPDKBench.startEAL() else { return 1 }
        var bench = DPDKBench(quick: o.quick)
        print(
            "\n" + pad("scenario", 24) + pad("loop", 9) + pad("Mpps", 8) + pad("vs io", 7) + pad("0-loss", 8)
                + "latency p50/p99/p99.9 ns")
        for s in Scenario.all(quick: o.quick) where o.scenario == nil || o.scenario == s.name {
            do {
                var io = try bench.measure(s, kind: .io)
                var swap = try bench.measure(s, kind: .macswap)
                var tern = try bench.measure(s, kind: .tern)
                // A second round of maxima, interleaved, so that a slow spell of this VM does not
                // land on one loop only; each loop keeps its better maximum.
                for kind in [LoopKind.io, .macswap, .tern] {
                    let again = try bench.measure(s, kind: kind, zeroLoss: false).mpps
                    switch kind {
                    case .io: io.mpps = max(io.mpps, again)
                    case .macswap: swap.mpps = max(swap.mpps, again)
                    case .tern: tern.mpps = max(tern.mpps, again)
                    }
                }
                for (name, r) in [("io", io), ("macswap", swap), ("tern", tern)] {
                    let lat = r.latencyNanoseconds.map { "\(fmt($0.p50, 0))/\(fmt($0.p99, 0))/\(fmt($0.p999, 0))" } ?? "-"
                    print(
                        pad(s.name, 24) + pad(name, 9) + pad(fmt(r.mpps, 2), 8) + pad(fmt(r.mpps / io.mpps, 2), 7)
                            + pad(fmt(r.zeroLossMpps, 2), 8) + lat)
                    var rec = Record(
                        scenario: s.name, mode: name == "tern" ? "dpdk" : "dpdk-\(name)",
                        nsPerPacket: r.mpps > 0 ? 1000 / r.mpps : 0)
                    rec.baselineMpps = io.mpps
                    rec.zeroLossMpps = r.zeroLossMpps
                    rec.latency = r.latencyNanoseconds
                    records.append(rec)
                }
            } catch {
                print("\(s.name): \(error)")
                return 1
            }
        }
        EAL.cleanup()
    }
    if let path = o.json {
        let body =
            "{\"machine\":\"\(machineDescription())\",\"date\":\"\(isoDate())\",\"records\":[\n"
            + records.map(\.json).joined(separator: ",\n") + "\n]}\n"
        guard let f = fopen(path, "w") else { return 1 }
        fputs(body, f)
        fclose(f)
    }
    return 0
}

/// Maglev build time for M slots and N equal backends, median of 11 builds, in ms.
/// Build time of one table; `skewed`: the last backend has weight 65535, the others 1.
func benchMaglev(m: Int, n: Int, skewed: Bool = false) -> Double {
    let backends = (0..<n).map {
        (address: IPAddress(v4: 0x0A00_0000 + UInt32($0)), weight: skewed ? ($0 == n - 1 ? 65535 : 1) : 100)
    }
    let table = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: m)
    defer { table.deallocate() }
    var times: [Double] = []
    for _ in 0..<11 {
        let t0 = monotonicNanoseconds()
        Maglev.build(backends: backends, into: table)
        times.append(Double(monotonicNanoseconds() - t0) / 1e6)
    }
    return times.sorted()[5]
}
