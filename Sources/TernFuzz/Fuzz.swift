// Fuzz targets, chosen by the environment variable TERN_FUZZ_TARGET:
// - `frame` (default): one frame (a burst of one) through the parser and the whole pipeline, built from a header
//   skeleton the first input bytes choose, against a snapshot whose VIPs cover every path
//   (IPv4/IPv6, TCP/UDP, any-port, IPIP and GUE, v4/v6 backends);
// - `burst`: several frames at once through `Worker.processBurst`, the pipeline's one entry point: the input
//   is a sequence of (2-byte big-endian length, frame) records, frames up to 9,216 bytes, each in
//   its own buffer with mbuf-sized headroom; every transmitted frame must stay inside its buffer
//   and every packet must be counted;
// - `toml`: the TOML parser;
// - `config`: the config loader (TOML to validated config); a config it accepts must build;
// - `keepalived`, `ipvsadm`: the importers; what they accept must render to TOML the config loader
//   takes (behind a fixed node and port). keepalived's input is a sandbox directory of files
//   (`Sandbox`), so its includes, globs and limits are fuzzed too.
//
// Built with -DTERN_LIBFUZZER and `--sanitize=fuzzer` it is a libFuzzer binary (see the Makefile's
// `fuzz` target); built plainly it replays the files named on its command line.

import TernBalancing
import TernConfig
import TernDataplane
import TernTestSupport
import TernWire

#if canImport(Glibc)
    import Glibc
#endif

/// The first bytes of the input choose the frame's header skeleton, so the fuzzer reaches VIPs
/// quickly; the rest are the frame. The same simulator is reused across inputs (a live flow table).
nonisolated(unsafe) var simulator: Simulator? = nil

func makeSimulator() -> Simulator {
    func a(_ s: String) -> IPAddress { IPAddress(s)! }
    let backends4: [(address: IPAddress, weight: Int)] = [(a("10.1.0.1"), 1), (a("10.1.0.2"), 2), (a("10.1.0.3"), 0)]
    let backends6: [(address: IPAddress, weight: Int)] = [(a("fc00::1"), 1), (a("fc00::2"), 1)]
    // UDP VIPs route QUIC by connection ID (server ids 1024 and 197634 named by v1 and v2 IDs).
    var quic = ServiceSpec(
        address: a("2001:db8::10"), port: 0, ipProtocol: IPProtocol.udp, encapsulation: .ipip, backends: backends6)
    quic.quic = true
    quic.quicServerIDs = [a("fc00::1"): 1024, a("fc00::2"): 197_634]
    var quicGUE = ServiceSpec(
        address: a("192.0.2.10"), port: 0, ipProtocol: IPProtocol.udp, encapsulation: .gue, guePort: 6080, backends: backends6)
    quicGUE.quic = true
    quicGUE.quicServerIDs = quic.quicServerIDs
    // The IPv6 TCP VIP clamps its SYNs' MSS itself (in the new-flow placement).
    var clamping = ServiceSpec(
        address: a("2001:db8::10"), port: 443, ipProtocol: IPProtocol.tcp, encapsulation: .gue, guePort: 6080, backends: backends4
    )
    clamping.clampMSS = true
    let spec = SnapshotSpec(
        services: [
            ServiceSpec(
                address: a("192.0.2.10"), port: 80, ipProtocol: IPProtocol.tcp, encapsulation: .ipip, backends: backends4),
            quicGUE,
            clamping,
            quic,
        ],
        tableSize: 251, tunnelSourceV4: a("10.0.0.10"), tunnelSourceV6: a("fc00::10"))
    let worker = Worker(
        // A port with every feature (MSS clamping, VLAN 7 both ways): `forwardWithPortFeatures`.
        index: 0,
        port: PortContext(
            mac: MACAddress(value: 2), gatewayMAC: MACAddress(value: 1), mtu: 1500, clampMSS: true, vlan: 7, replyVLAN: 7),
        settings: WorkerSettings(flowTableEntries: 1024, tcpIdleTimeout: 300, udpIdleTimeout: 30, tcpClosingTimeout: 10))
    return Simulator(snapshot: ForwardingSnapshot(spec, generation: 1), worker: worker)
}

enum FuzzTarget: String {
    case frame, burst, toml, config, keepalived, ipvsadm
}

let target: FuzzTarget = {
    guard let name = getenv("TERN_FUZZ_TARGET").map({ String(cString: $0) }) else { return .frame }
    guard let t = FuzzTarget(rawValue: name) else {
        let message = "TERN_FUZZ_TARGET must be frame, burst, toml, config, keepalived or ipvsadm\n"
        _ = write(2, message, message.utf8.count)
        exit(64)
    }
    return t
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    switch target {
    case .frame:
        if simulator == nil { simulator = makeSimulator() }
        _ = simulator!.run(FuzzFrames.frame(from: input))
    case .burst:
        fuzzBurst(input)
    case .toml:
        _ = try? TOMLParser.parse(Array(input))
    case .config:
        fuzzConfig(input)
    case .keepalived, .ipvsadm:
        fuzzImport(input)
    }
    return 0
}

/// A config the loader accepts must build (small ones, to keep the fuzzer fast).
func fuzzConfig(_ input: UnsafeBufferPointer<UInt8>) {
    guard let config = try? ConfigLoader.parse(Array(input), file: "fuzz.toml") else { return }
    if config.maglevTableBytes <= 1 << 20 {
        _ = ForwardingSnapshot(config.snapshotSpec, generation: 1)
    }
}

/// An import that succeeds must render to VIPs the config loader reads (it may refuse them for
/// reasons of its own, a loop or a duplicate, but must not crash).
func fuzzImport(_ input: UnsafeBufferPointer<UInt8>) {
    let bytes = Array(input)
    var result: ImportResult
    do {
        if target == .ipvsadm {
            guard let text = String(validating: bytes, as: UTF8.self) else { return }
            result = try IPVSAdm.parse(text, file: "rules")
        } else {
            let sandbox = Sandbox(bytes)
            result = try Keepalived.load(path: Sandbox.top, read: sandbox.read, glob: sandbox.glob)
        }
    } catch {
        return
    }
    let head =
        "[node]\nname = \"f\"\ntunnel_source_v4 = \"10.0.0.1\"\ntunnel_source_v6 = \"fc00::1\"\n"
        + "[[port]]\ndevice = \"d\"\ngateway_mac = \"02:00:00:00:00:01\"\n[maglev]\ntable_size = 251\n"
    let text = head + ImportRenderer.toml(result.vips, warnings: &result.warnings)
    do {
        _ = try ConfigLoader.parse(text, file: "imported.toml")
    } catch {
        // A refusal must be about the VIPs' meaning, never about the TOML the renderer wrote.
        if error.line != nil { fatalError("rendered TOML does not parse: \(error)\n\(text)") }
    }
}

/// A keepalived input as a directory of files, in memory: the bytes before the first line
/// `#file NAME` are /sandbox/keepalived.conf, each such line (a comment to keepalived, so plain
/// configs stay valid seeds) starts /sandbox/NAME. Includes find files only here (glob patterns
/// by fnmatch); nothing outside is read.
struct Sandbox {
    static let top = "/sandbox/keepalived.conf"
    var files: [String: [UInt8]] = [:]

    init(_ bytes: [UInt8]) {
        var name = Sandbox.top
        var current: [UInt8] = []
        for line in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            if line.starts(with: Array("#file ".utf8)) {
                files[name] = current
                name = "/sandbox/" + String(decoding: line.dropFirst(6), as: UTF8.self)
                current = []
            } else {
                current += line
                current.append(0x0A)
            }
        }
        files[name] = current
    }

    func read(_ path: String) -> [UInt8]? { files[path] }

    func glob(_ pattern: String) -> [String] {
        files.keys.filter { fnmatch(pattern, $0, FNM_PATHNAME) == 0 }.sorted()
    }
}

/// Buffers for one burst, as mbufs give them: headroom, then room for a 9,216-byte frame.
struct BurstArena {
    static let packets = 64
    static let room = Simulator.headroom + 9216
    let buffers = UnsafeMutableRawPointer.allocate(byteCount: packets * room, alignment: 64)
    let frames = UnsafeMutablePointer<Packet>.allocate(capacity: packets)
    let outcomes = UnsafeMutablePointer<Outcome>.allocate(capacity: packets)
}

nonisolated(unsafe) var arena: BurstArena? = nil

func fuzzBurst(_ input: UnsafeBufferPointer<UInt8>) {
    if simulator == nil { simulator = makeSimulator() }
    if arena == nil { arena = BurstArena() }
    let a = arena!
    var count = 0
    var at = 0
    while count < BurstArena.packets && at + 2 <= input.count {
        let length = min(Int(input[at]) << 8 | Int(input[at + 1]), input.count - at - 2, 9216)
        let buffer = a.buffers + count * BurstArena.room
        let data = buffer + Simulator.headroom
        data.copyMemory(from: input.baseAddress! + at + 2, byteCount: length)
        a.frames[count] = Packet(data: data, length: length, headroom: Simulator.headroom)
        at += 2 + length
        count += 1
    }
    func counted() -> UInt64 { simulator!.worker.counters.received + simulator!.worker.counters[.held] }
    let before = counted()
    simulator!.runBurst(a.frames, count: count, outcomes: a.outcomes)
    // Every packet counted once (a held fragment is not kept here: the burst's buffers are reused);
    // every frame to transmit inside its own buffer.
    precondition(counted() == before + UInt64(count), "a packet of the burst was not counted")
    for i in 0..<count where a.outcomes[i].transmits {
        let buffer = a.buffers + i * BurstArena.room
        let p = a.frames[i]
        precondition(p.data >= buffer && p.data + p.length <= buffer + BurstArena.room, "frame \(i) left its buffer")
        precondition(p.data - buffer == p.headroom, "frame \(i): headroom out of step")
    }
}

#if TERN_LIBFUZZER
    // swift-format-ignore: AlwaysUseLowerCamelCase
    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
    ) -> CInt

    /// SwiftPM links an executable's entry point under the name `<Target>_main`; libFuzzer brings its
    /// own `main`, so the fuzz build defines only this and hands control to libFuzzer's driver.
    @_cdecl("TernFuzz_main")
    public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
        var argc = argc
        var argv = argv
        return LLVMFuzzerRunDriver(&argc, &argv) { fuzzOne($0, $1) }
    }
#else
    @main
    struct ReplayMain {
        static func main() {
            for path in CommandLine.arguments.dropFirst() {
                guard let f = fopen(path, "rb") else { continue }
                var bytes: [UInt8] = []
                var c = fgetc(f)
                while c != EOF {
                    bytes.append(UInt8(c))
                    c = fgetc(f)
                }
                fclose(f)
                bytes.withUnsafeBufferPointer { _ = fuzzOne($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
            }
            print("replayed \(CommandLine.arguments.count - 1) inputs")
        }
    }
#endif
